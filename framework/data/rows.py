"""Training rows: the label that means "no loss", synthetic rows, and the collate function that stacks rows into
`[b, s]` batches (input_ids, labels, position_ids)."""

from typing import List, Optional

import torch

IGNORE = -100
"""The label of a position that takes no loss (padding, prompts, document starts): PyTorch's and transformers'
ignore_index."""
"""Label of a position that carries no loss (padding, a prompt, a document's first token in a packed row)."""


class SyntheticRows(torch.utils.data.Dataset):
    """Random tokens in [0, vocab_size): row i is a pure function of (seed, i), so every rank agrees."""

    def __init__(self, *, num_samples: int, lengths: List[int], vocab_size: int, seed: int):
        self.n, self.lengths, self.vocab, self.seed = num_samples, lengths, vocab_size, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        ids = torch.randint(0, self.vocab, (self.lengths[i % len(self.lengths)],), generator=g)
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(len(ids))}


def collate(rows, *, multiple_of: int, length: Optional[int] = None, pad_id: int = 0):
    """Stack rows right-padded to `length` (or the longest row rounded up to `multiple_of`). Pad labels are IGNORE."""
    longest = max(len(r["input_ids"]) for r in rows)
    target = length or -(-longest // multiple_of) * multiple_of
    out = {"input_ids": [], "labels": [], "position_ids": []}
    for r in rows:
        pad = target - len(r["input_ids"])
        ids = torch.as_tensor(r["input_ids"], dtype=torch.long)
        labels = torch.as_tensor(r.get("labels", ids), dtype=torch.long)
        pos = torch.as_tensor(r["position_ids"], dtype=torch.long) if "position_ids" in r else torch.arange(len(ids))
        out["input_ids"].append(torch.nn.functional.pad(ids, (0, pad), value=pad_id))
        out["labels"].append(torch.nn.functional.pad(labels, (0, pad), value=IGNORE))
        # pad positions continue the last document so they form no new document of their own
        out["position_ids"].append(torch.cat([pos, pos[-1] + 1 + torch.arange(pad)]) if pad else pos)
    return {k: torch.stack(v) for k, v in out.items()}
