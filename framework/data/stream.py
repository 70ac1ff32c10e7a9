"""data.streaming=true: rows from a corpus read as a stream (datasets IterableDataset), for corpora that do not fit.

The same rows as the map-style path (framework.data.hf: packing, truncation, labels), produced in one pass. Which
rank reads which row follows StepSampler's order without shuffling the whole corpus: global row r belongs to
micro-step k = r // (dp * b) and DP replica (r // b) % dp, and SP rank j of a group reads the steps k with
k % sp == j (the SP adapter then processes the group's batches in turn). Every rank reads the whole stream and keeps
its own rows, so no rank needs to know the stream's length. `data.shuffle` shuffles with a seeded buffer of
`data.shuffle_buffer` documents (epoch e uses seed + e). Resuming skips the rows of the steps already done.
"""

import itertools

import numpy as np
import torch

from framework.data.rows import IGNORE


class StreamRows(torch.utils.data.IterableDataset):
    """Yields, for one rank, lists of `micro_batch_size` rows (dicts of 1-D tensors), epoch after epoch."""

    def __init__(self, docs, *, cfg):
        self.docs, self.cfg = docs, cfg
        self.dp_rank, self.dp, self.sp_rank, self.sp, self.b, self.seed, self.start_step = 0, 1, 0, 1, 1, 0, 0

    def assign(
        self,
        *,
        dp_rank: int,
        dp_size: int,
        sp_rank: int,
        sp_size: int,
        micro_batch_size: int,
        seed: int,
        start_step: int = 0,
    ):
        self.dp_rank, self.dp, self.sp_rank, self.sp = dp_rank, dp_size, sp_rank, sp_size
        self.b, self.seed, self.start_step = micro_batch_size, seed, start_step - start_step % sp_size
        return self

    def rows(self, epoch: int):
        """Every training row of one pass over the stream, in order."""
        docs = self.docs
        if self.cfg.shuffle:
            docs = docs.shuffle(seed=self.seed + epoch, buffer_size=self.cfg.shuffle_buffer)
        L = self.cfg.seq_length
        if not self.cfg.packing:
            for d in docs:
                ids = np.asarray(d["input_ids"], dtype=np.int64)
                if len(ids) == 0 or (len(ids) > L and not self.cfg.truncation):
                    continue
                labels = np.asarray(d["labels"], dtype=np.int64) if d.get("labels") is not None else ids
                yield _row(ids[:L], labels[:L].copy(), np.arange(min(len(ids), L)))
            return
        buf_ids, buf_labels, buf_pos = [], [], []
        fill = 0
        for d in docs:
            ids = np.asarray(d["input_ids"], dtype=np.int64)
            labels = (np.asarray(d["labels"], dtype=np.int64) if d.get("labels") is not None else ids).copy()
            while len(ids):
                take = min(L - fill, len(ids))
                lab = labels[:take].copy()
                lab[0] = IGNORE
                buf_ids.append(ids[:take]), buf_labels.append(lab), buf_pos.append(np.arange(take))
                ids, labels, fill = ids[take:], labels[take:], fill + take
                if fill == L:
                    yield _row(np.concatenate(buf_ids), np.concatenate(buf_labels), np.concatenate(buf_pos))
                    buf_ids, buf_labels, buf_pos, fill = [], [], [], 0
        if fill:
            yield _row(np.concatenate(buf_ids), np.concatenate(buf_labels), np.concatenate(buf_pos))

    def __iter__(self):
        per_step = self.dp * self.b
        r, batch = -1, []  # r counts rows across epochs, so steps never restart mid-SP-round
        for epoch in itertools.count():
            seen = 0
            for row in self.rows(epoch):
                seen, r = seen + 1, r + 1
                if r < self.start_step * per_step:  # resume: the steps already done
                    continue
                k, replica = r // per_step, (r // self.b) % self.dp
                if k % self.sp == self.sp_rank and replica == self.dp_rank:
                    batch.append(row)
                    if len(batch) == self.b:
                        yield batch
                        batch = []
            if seen == 0:
                raise RuntimeError("the data stream holds no rows")


def _row(ids, labels, pos):
    return {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(pos),
    }
