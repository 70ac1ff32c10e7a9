"""Loss by position: the buckets of the predicted token's position in its document, and the per-bucket sums."""

from typing import List, Sequence

import torch

from framework.data.rows import IGNORE


def auto_edges(seq_length: int) -> List[int]:
    """0, then doubling from the largest power of two <= seq_length / 64 up to seq_length (the last edge)."""
    first = 1 << (max(1, seq_length // 64).bit_length() - 1)
    edges, e = [0], first
    while e < seq_length:
        edges.append(e)
        e *= 2
    return edges + [seq_length]


def position_edges(spec, seq_length: int) -> List[int]:
    """Bucket edges from eval.position_buckets: `auto` (or null) or a list of increasing edges; bucket i is
    [edges[i], edges[i+1])."""
    if spec is None or str(spec) == "auto":
        return auto_edges(seq_length)
    return [int(x) for x in spec]


def bucket_sums(ce: torch.Tensor, shift_labels: torch.Tensor, position_ids: torch.Tensor, edges: torch.Tensor):
    """This rank's (CE sum, token count) per bucket, float64 `[2, k]`, k = len(edges) - 1. The predicted token of
    position i is the next one, in the same document wherever its label is valid (a packed document's first token
    has label IGNORE), so its position in the document is position_ids[i] + 1: known on every SP / ring shard."""
    k = edges.numel() - 1
    out = torch.zeros(2, k, dtype=torch.float64, device=ce.device)
    idx = torch.searchsorted(edges, position_ids + 1, right=True) - 1
    keep = (shift_labels != IGNORE) & (idx >= 0) & (idx < k)
    out[0].index_add_(0, idx[keep], ce[keep].double())
    out[1].index_add_(0, idx[keep], torch.ones_like(ce[keep], dtype=torch.float64))
    return out


def as_record(edges: Sequence[int], sums: Sequence[float], counts: Sequence[float]) -> list:
    """`[[lo, hi, loss, tokens], ...]` (loss null for a bucket without tokens)."""
    return [
        [int(edges[i]), int(edges[i + 1]), sums[i] / counts[i] if counts[i] else None, int(counts[i])]
        for i in range(len(edges) - 1)
    ]
