"""Document masking for packed rows: a document never attends to another one in the same row.

A packed row holds several documents; its `position_ids` restart at 0 where a document starts. The functions here
wrap a core attention implementation (`sdpa`, `flex_attention`) so that, whenever a row's position_ids reset, the
attention is computed per document, causal inside each, without any `[s, s]` mask:

- sdpa: `torch.nn.attention.varlen.varlen_attn` (causal, window (-1, 0)) on CUDA in bf16/fp16; elsewhere one causal
  SDPA call per document (a Python loop over documents: exact, fine on CPU, slow with thousands of tiny documents).
- flex_attention: a document BlockMask built from per-block min/max document ids, O((s/128)^2), never the
  O(s^2) dense mask that `create_block_mask` evaluates when not compiled.
- A row whose position_ids never reset takes the implementation's own fast path (sdpa: is_causal), unchanged.

`install(impl)` replaces `ALL_ATTENTION_FUNCTIONS[impl]` inside transformers with the document-aware function and
makes transformers build no mask for `impl` (it would build a dense `[s_local, s_local]` mask for packed rows, which
Ulysses then throws away). It must run BEFORE DeepSpeed's `UlyssesSPAttentionHF.register_with_transformers`, so the
Ulysses wrapper (which all-gathers position_ids to the full sequence and passes attention_mask=None, or for flex a
plain causal BlockMask) calls it as its core function. With sp_size == 1 the model calls it directly.

flash_attention_2/3 need nothing here: transformers already runs flash varlen from position_ids, but only for
micro batch size 1 (`_is_packed_sequence`), which validation enforces for packed rows.
"""

from typing import Callable, List, Optional

import torch
import torch.nn.functional as F

from framework.log import get_logger

log = get_logger(__name__)
DOCUMENT_MASKED = ("sdpa", "flex_attention")
"""Implementations this module can keep documents apart in."""
FLEX_BLOCK = 128
"""flex_attention tile size (tokens) of the BlockMask built here."""


def document_starts(position_ids: torch.Tensor) -> Optional[List[List[int]]]:
    """Per row, the indices where a document starts (position id 0, and index 0 always); None if no row resets.

    position_ids: `[b, s]` (or `[s]`). One CPU-GPU sync point (the reset check, then the start indices).
    """
    pos = position_ids.view(-1, position_ids.shape[-1])
    resets = pos[:, 1:] == 0
    if not bool(resets.any()):
        return None
    return [[0] + (torch.nonzero(r).view(-1) + 1).tolist() for r in resets]


def document_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """`[b, s]` int32: for each token, the index of its document within its row (0, 0, 1, 1, 1, 2, ...)."""
    pos = position_ids.view(-1, position_ids.shape[-1])
    starts = pos == 0
    starts[:, 0] = True
    return (starts.cumsum(-1) - 1).to(torch.int32)


# ---------------------------------------------------------------------------------------------------------------- sdpa
def sdpa_per_document(query, key, value, starts: List[List[int]], *, scaling=None, dropout: float = 0.0):
    """Causal SDPA inside each document. query `[b, h, s, d]`, key/value `[b, h_kv, s, d]` → `[b, s, h, d]`."""
    b, h, s, _ = query.shape
    gqa = key.shape[1] != h
    rows = []
    for r in range(b):
        bounds = starts[r] + [s]
        pieces = [
            F.scaled_dot_product_attention(
                query[r : r + 1, :, a:e],
                key[r : r + 1, :, a:e],
                value[r : r + 1, :, a:e],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
            for a, e in zip(bounds, bounds[1:])
            if e > a
        ]
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous()


def _varlen_available(query) -> bool:
    if query.device.type != "cuda" or query.dtype not in (torch.bfloat16, torch.float16):
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def sdpa_varlen(query, key, value, starts: List[List[int]], *, scaling=None):
    """Causal flash varlen over all documents of all rows at once (CUDA, bf16/fp16). Shapes as sdpa_per_document."""
    from torch.nn.attention.varlen import varlen_attn

    b, h, s, d = query.shape
    cu = [r * s + a for r, row in enumerate(starts) for a in row] + [b * s]
    cu_t = torch.tensor(cu, dtype=torch.int32, device=query.device)
    longest = max(e - a for a, e in zip(cu, cu[1:]))
    if key.shape[1] != h:  # GQA: varlen_attn (torch 2.11) takes no enable_gqa; give every query head its KV head
        key, value = (t.repeat_interleave(h // t.shape[1], dim=1) for t in (key, value))
    q, k, v = (t.transpose(1, 2).reshape(b * s, t.shape[1], d) for t in (query, key, value))
    out = varlen_attn(q, k, v, cu_t, cu_t, longest, longest, scale=scaling, window_size=(-1, 0))
    return out.view(b, s, h, d)


# ---------------------------------------------------------------------------------------------------------- flex
def document_block_mask(position_ids: torch.Tensor, *, block: int = FLEX_BLOCK):
    """Causal document BlockMask for `[b, s]` position_ids, built from per-tile document ranges.

    Tile (i, j) of query block i and key block j is empty unless j <= i and their document ranges overlap; it is
    full when j < i and both tiles lie inside one and the same document; otherwise partial (mask_mod decides).
    Cost O(b * (s/block)^2), no `[s, s]` tensor.
    """
    from torch.nn.attention.flex_attention import BlockMask

    doc = document_ids(position_ids)
    b, s = doc.shape
    nb = -(-s // block)
    padded = F.pad(doc, (0, nb * block - s), mode="replicate") if nb * block != s else doc
    tiles = padded.view(b, nb, block)
    lo, hi = tiles.amin(-1), tiles.amax(-1)  # [b, nb]: document range of each tile
    i = torch.arange(nb, device=doc.device)
    below = i[None, :, None] >= i[None, None, :]  # [1, nb(q), nb(kv)] causal tiles
    strictly = i[None, :, None] > i[None, None, :]
    overlap = (hi[:, None, :] >= lo[:, :, None]) & (lo[:, None, :] <= hi[:, :, None])
    one_doc = lo == hi
    full = strictly & one_doc[:, :, None] & one_doc[:, None, :] & (lo[:, :, None] == lo[:, None, :])
    if s % block:  # the last query tile is cut short: let mask_mod handle it
        full[:, -1, :] = False
    partial = below & overlap & ~full

    def to_indices(m):
        num = m.sum(-1).to(torch.int32)[:, None]
        idx = torch.argsort(m.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)[:, None]
        return num, idx

    def mask_mod(b_idx, h_idx, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (padded[b_idx, q_idx] == padded[b_idx, kv_idx])

    kv_num, kv_idx = to_indices(partial)
    full_num, full_idx = to_indices(full)
    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(s, s)
    )


class _BlockMaskCache:
    """The BlockMask of the last position_ids seen: every layer of one forward reuses it (one compare per layer)."""

    def __init__(self):
        self.pos, self.mask = None, None

    def get(self, position_ids):
        if (
            self.pos is None
            or self.pos.shape != position_ids.shape
            or self.pos.device != position_ids.device
            or not torch.equal(self.pos, position_ids)
        ):
            self.pos, self.mask = position_ids.clone(), document_block_mask(position_ids)
        return self.mask


# ------------------------------------------------------------------------------------------------- the wrapper
def document_attention(impl: str, core: Callable) -> Callable:
    """A transformers attention function for `impl` that keeps the documents of packed rows apart.

    Same signature as transformers' attention functions: (module, query `[b, h, s, d]`, key, value, attention_mask,
    scaling=, dropout=, position_ids=, ...) → (output `[b, s, h, d]`, None). Under Ulysses SP it runs on the full
    sequence (s = global length) for a slice of heads, after DeepSpeed's all-gather of position_ids.
    """
    if impl not in DOCUMENT_MASKED:
        raise ValueError(f"document masking is implemented for {DOCUMENT_MASKED}, not {impl}")
    cache = _BlockMaskCache()

    def attend(module, query, key, value, attention_mask, *args, **kwargs):
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            raise RuntimeError("document masking needs position_ids in every forward (the data adapter adds them)")
        if position_ids.shape[-1] != query.shape[2]:
            raise RuntimeError(
                f"position_ids cover {position_ids.shape[-1]} positions but the attention sees {query.shape[2]}"
            )
        if impl == "flex_attention":  # the mask transformers/DeepSpeed built (if any) is replaced by ours
            pos = position_ids.expand(query.shape[0], -1) if position_ids.shape[0] == 1 else position_ids
            return core(module, query, key, value, cache.get(pos), *args, **kwargs)
        starts = document_starts(position_ids.expand(query.shape[0], -1))
        if starts is None:  # one document per row: the plain path
            return core(module, query, key, value, attention_mask, *args, **kwargs)
        scaling = kwargs.get("scaling")
        if _varlen_available(query) and not kwargs.get("dropout"):
            _announce("varlen_attn")
            return sdpa_varlen(query, key, value, starts, scaling=scaling), None
        _announce("one causal SDPA call per document")
        return sdpa_per_document(query, key, value, starts, scaling=scaling, dropout=kwargs.get("dropout") or 0.0), None

    attend.document_masking = True
    attend.core = core
    return attend


_ANNOUNCED = set()


def _announce(kernel: str):
    """Say once per process (rank 0) which kernel keeps packed documents apart."""
    if kernel not in _ANNOUNCED:
        _ANNOUNCED.add(kernel)
        log.info(f"document masking: packed rows run {kernel}")


def _no_mask(*args, **kwargs):
    """Mask builder for a document-masked implementation: the attention function derives its own from position_ids."""
    return None


def install(impl: str) -> bool:
    """Make transformers' `impl` document-aware (idempotent). Returns False where `impl` needs nothing (flash).

    Call it before DeepSpeed's UlyssesSPAttentionHF.register_with_transformers wraps `impl`.
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if impl not in DOCUMENT_MASKED:
        return False
    current = ALL_ATTENTION_FUNCTIONS[impl]
    if getattr(current, "document_masking", False):
        return True
    ALL_ATTENTION_FUNCTIONS[impl] = document_attention(impl, current)
    ALL_MASK_ATTENTION_FUNCTIONS[impl] = _no_mask
    return True


def uninstall(impl: str):
    """Undo `install` (tests)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    current = ALL_ATTENTION_FUNCTIONS[impl]
    if getattr(current, "document_masking", False):
        ALL_ATTENTION_FUNCTIONS[impl] = current.core
        if impl in ALL_MASK_ATTENTION_FUNCTIONS._local_mapping:
            del ALL_MASK_ATTENTION_FUNCTIONS[impl]
