"""What a data=hf corpus holds, said before training starts: documents, tokens, rows after packing, tokens with
loss, and how many passes over it train.max_steps makes, with a warning when that looks like a mistake."""

from typing import Dict, List

IGNORE = -100
MANY_EPOCHS = 10
"""More passes over the corpus than this gets a warning (a tiny corpus, or max_steps meant for another one)."""


def corpus_stats(dataset) -> Dict[str, int]:
    """documents, tokens, rows, loss_tokens of a framework.data.hf PackedRows or DocumentRows (read column-wise from
    the memory-mapped Arrow table, one chunk at a time)."""
    import numpy as np
    import pyarrow.compute as pc

    seq_length = dataset.L
    if hasattr(dataset, "lengths"):  # packed
        lengths = dataset.lengths
    else:
        all_lengths = np.asarray(dataset.docs.with_format("numpy")["length"], dtype=np.int64)
        lengths = np.minimum(all_lengths[dataset.index], seq_length)
    documents, tokens = int((lengths > 0).sum()), int(lengths.sum())
    loss_tokens = tokens - documents  # every document's first token is no target (nothing comes before it)
    if dataset.has_labels:  # chat rows: the assistant's tokens (unpacked rows cut short: counted whole)
        loss_tokens = 0
        docs_table = dataset.docs.data.table
        for chunk in docs_table.column("labels").chunks:
            loss_tokens += int(pc.sum(pc.not_equal(pc.list_flatten(chunk), IGNORE)).as_py() or 0)
            firsts = pc.list_flatten(pc.list_slice(chunk, 0, 1))
            loss_tokens -= int(pc.sum(pc.not_equal(firsts, IGNORE)).as_py() or 0)  # position 0: no token before it
    return {
        "documents": documents,
        "tokens": tokens,
        "rows": len(dataset),
        "loss_tokens": max(loss_tokens, 0),
        "seq_length": seq_length,
    }


def corpus_lines(stats: Dict[str, int], *, max_steps: int, rows_per_step: int, path: str) -> List[str]:
    """The start lines about the corpus: its figures, the epochs max_steps means, and warnings."""
    s = stats
    epochs = max_steps * rows_per_step / max(s["rows"], 1)
    lines = [
        f"corpus {path}: {s['documents']:,} documents, {s['tokens']:,} tokens -> {s['rows']:,} rows of "
        f"{s['seq_length']:,} tokens, {s['loss_tokens']:,} tokens with loss",
        f"train.max_steps={max_steps} x {rows_per_step} rows per step = {max_steps * rows_per_step:,} rows: "
        f"{epochs:.2f} epochs",
    ]
    if s["tokens"] < s["seq_length"]:
        lines.append(
            f"warning: the whole corpus ({s['tokens']:,} tokens) is shorter than one row "
            f"(data.seq_length={s['seq_length']:,}): every step trains on the same few tokens; lower "
            "data.seq_length or add data"
        )
    if epochs > MANY_EPOCHS:
        lines.append(
            f"warning: train.max_steps={max_steps} goes over the corpus {epochs:.0f} times (the model will "
            f"likely memorize it); lower train.max_steps (one epoch is "
            f"{max(s['rows'] // max(rows_per_step, 1), 1)} steps) or add data"
        )
    return lines
