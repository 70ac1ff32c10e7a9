"""Ring attention over the context-parallel (cp) group, as the core attention inside Ulysses (Ulysses x ring, USP).

Layout. A row of `s` tokens is cut into 2 x cp_size chunks; cp rank r holds chunks r and 2 cp_size - 1 - r (zigzag,
or head-tail), concatenated, `s_cp = s / cp_size` tokens; Ulysses then splits those over its sp_size ranks
(framework.data.adapter.shard_row). After Ulysses's all-to-all every rank of a cp ring holds query/key/value
`[b, h_local, s_cp, d]` for its two chunks, and the ring passes K/V around: at step i rank r holds the K/V of rank
r - i. Causality decides, per step, what is computed (`ring_steps`): step 0 is the local causal block; at a step where
the K/V come from a lower rank every local query sees their first chunk in full; from a higher rank only the second
local query chunk sees both K/V chunks in full. Each step is one kernel call of (2 chunks x 1 chunk) or (1 x 2): every
rank does the same work (tests/unit/test_ring.py counts the query x key pairs).

The partial outputs are merged by their log-sum-exp. The backward replays the ring with the final output and
log-sum-exp (the flash-attention backward then gives each block's exact share of the gradient); the K/V gradients
travel around the ring with their K/V and arrive at their owner after the last step.

Why not torch's own context parallelism (torch.distributed.tensor.experimental.context_parallel, torch 2.13): its
ring is a DTensor dispatch rule for the CUDA SDPA kernels only (flash, efficient, cuDNN), so on CPU (sdpa runs
`_scaled_dot_product_flash_attention_for_cpu`) nothing is sharded; `context_parallel()` shards the model's input
buffers itself, whereas inside Ulysses the tensors are plain local tensors in the middle of the model; and its
templated ring (`_templated_ring_attention`) is private and takes no GQA. The kernels here are torch's own
(`torch.ops.aten` SDPA ops that return the log-sum-exp); this module only orders them and the exchanges.
"""
from typing import List, Tuple

import torch
import torch.distributed as dist


def zigzag_chunks(rank: int, size: int) -> Tuple[int, int]:
    """The two chunks (of 2 x size) of a row that cp rank `rank` holds."""
    return rank, 2 * size - 1 - rank


def ring_steps(rank: int, size: int) -> List[Tuple[int, str, str, bool]]:
    """For each ring step: (rank whose K/V this rank holds, query part, K/V part, causal).

    Parts: "all" (both local chunks) or "first"/"second" chunk. Chunk order: a = rank < b = 2 size - 1 - rank.
    """
    steps = [(rank, "all", "all", True)]
    for i in range(1, size):
        src = (rank - i) % size
        # src < rank: chunk src lies before both local chunks, chunk 2 size - 1 - src after both
        # src > rank: both of src's chunks lie after chunk a and before chunk b
        steps.append((src, "all", "first", False) if src < rank else (src, "second", "all", False))
    return steps


def _part(t: torch.Tensor, part: str) -> torch.Tensor:
    """A part of a `[b, h, s_cp, ...]` tensor along dim 2 (the two chunks are its halves)."""
    if part == "all":
        return t
    half = t.shape[2] // 2
    return t[:, :, :half] if part == "first" else t[:, :, half:]


# ---------------------------------------------------------------------------------------------------- kernels
def _repeat_kv(t: torch.Tensor, heads: int) -> torch.Tensor:
    return t if t.shape[1] == heads else t.repeat_interleave(heads // t.shape[1], dim=1)


def _sum_kv(t: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """Gradient of _repeat_kv: sum the copies of each KV head."""
    b, h, s, d = t.shape
    return t if h == kv_heads else t.view(b, kv_heads, h // kv_heads, s, d).sum(2)


def _flash_cuda(q) -> bool:
    return q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16)


def block_forward(q, k, v, *, causal: bool, scale):
    """Attention of one block: out `[b, h, sq, d]` (q's dtype), lse `[b, h, sq]` (fp32), and what the kernel's
    backward needs besides (CUDA flash: cum_seq_q/k, max_q/k, the RNG state; else None). K/V have h_kv heads."""
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
        return out, lse.float(), None
    if _flash_cuda(q):
        out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, causal, False, scale=scale)
        return out, lse.float(), (cq, ck, mq, mk, seed, offset)
    return (*_math_forward(q, k, v, causal=causal, scale=scale), None)


def block_backward(dout, q, k, v, out, lse, aux, *, causal: bool, scale):
    """Gradients of one block given the FINAL (merged) out and lse, which makes them exact shares of the whole;
    `aux`: block_forward's third result for this block."""
    kv_heads = k.shape[1]
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    if q.device.type == "cpu":
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            dout, q, k, v, out, lse, 0.0, causal, scale=scale)
    elif _flash_cuda(q):  # as torch's own context parallelism calls it (the forward's extra outputs passed back)
        cq, ck, mq, mk, seed, offset = aux
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, out, lse.to(torch.float32), cq, ck, mq, mk, 0.0, causal, seed, offset, scale=scale)
    else:
        dq, dk, dv = _math_backward(dout, q, k, v, out, lse, causal=causal, scale=scale)
    return dq, _sum_kv(dk, kv_heads), _sum_kv(dv, kv_heads)


def _scores(q, k, causal, scale):
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return s, scale


def _math_forward(q, k, v, *, causal, scale):
    """Any device and dtype (e.g. fp32 on CUDA, where no flash kernel exists): an `[sq, sk]` score matrix per head."""
    s, _ = _scores(q, k, causal, scale)
    lse = torch.logsumexp(s, dim=-1)
    return torch.matmul(torch.exp(s - lse[..., None]), v.float()).to(q.dtype), lse


def _math_backward(dout, q, k, v, out, lse, *, causal, scale):
    s, scale = _scores(q, k, causal, scale)
    p = torch.exp(s - lse[..., None])
    dout32 = dout.float()
    dv = torch.matmul(p.transpose(-1, -2), dout32)
    dp = torch.matmul(dout32, v.float().transpose(-1, -2))
    ds = p * (dp - (dout32 * out.float()).sum(-1, keepdim=True))
    dq, dk = torch.matmul(ds, k.float()) * scale, torch.matmul(ds.transpose(-1, -2), q.float()) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


# -------------------------------------------------------------------------------------------------- the ring
def _shift(t: torch.Tensor, group):
    """Start sending `t` to the next rank of the ring and receiving the previous rank's; returns (buffer, requests).
    Every rank of the group must call it, in the same order."""
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    buf = torch.empty_like(t)
    ops = [dist.P2POp(dist.isend, t, dist.get_global_rank(group, (rank + 1) % size), group),
           dist.P2POp(dist.irecv, buf, dist.get_global_rank(group, (rank - 1) % size), group)]
    return buf, dist.batch_isend_irecv(ops)


def _wait(pending):
    buf, reqs = pending
    for r in reqs:
        r.wait()
    return buf


def _merge(out, lse, part: str, o, l):
    """Fold a block's (o, l) into the running fp32 (out, lse) for the query `part`, in place."""
    out_p, lse_p = _part(out, part), _part(lse, part)
    new = torch.logaddexp(lse_p, l)
    out_p.mul_(torch.exp(lse_p - new)[..., None]).add_(o.float() * torch.exp(l - new)[..., None])
    lse_p.copy_(new)


class RingAttention(torch.autograd.Function):
    """Causal ring attention over `group`. q `[b, h, s_cp, d]`, k/v `[b, h_kv, s_cp, d]` (this rank's two zigzag
    chunks) → `[b, h, s_cp, d]`. Every rank of the group must call forward and backward (point-to-point exchanges)."""

    @staticmethod
    def forward(ctx, q, k, v, group, scale):
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        kv = torch.stack([k, v]).contiguous()  # one message per step
        out = lse = None
        ctx.aux = []  # per step, what the kernel's backward needs besides (small; not activations)
        for i, (_, qp, kp, causal) in enumerate(ring_steps(rank, size)):
            pending = _shift(kv, group) if i < size - 1 else None  # overlaps with this step's kernel
            o, l, aux = block_forward(_part(q, qp), _part(kv[0], kp), _part(kv[1], kp), causal=causal, scale=scale)
            ctx.aux.append(aux)
            if out is None:
                out, lse = o.float(), l.clone()
            else:
                _merge(out, lse, qp, o, l)
            if pending is not None:
                kv = _wait(pending)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.scale = group, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        group, scale = ctx.group, ctx.scale
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        dout = dout.contiguous()
        dq = torch.zeros_like(q, dtype=torch.float32)
        kv = torch.stack([k, v]).contiguous()
        dkv_pending = None
        for i, (_, qp, kp, causal) in enumerate(ring_steps(rank, size)):
            kv_pending = _shift(kv, group) if i < size - 1 else None
            q_, o_, l_, do_ = (_part(t, qp) for t in (q, out, lse, dout))
            gq, gk, gv = block_backward(do_, q_, _part(kv[0], kp), _part(kv[1], kp), o_, l_.contiguous(),
                                        ctx.aux[i], causal=causal, scale=scale)
            _part(dq, qp).add_(gq.float())
            # the gradient of the K/V held now: what the ranks before added, plus this rank's share
            dkv = torch.zeros_like(kv, dtype=torch.float32) if dkv_pending is None else _wait(dkv_pending)
            _part(dkv[0], kp).add_(gk.float())
            _part(dkv[1], kp).add_(gv.float())
            dkv_pending = _shift(dkv, group)  # after the last step this takes each K/V gradient home
            if kv_pending is not None:
                kv = _wait(kv_pending)
        dkv = _wait(dkv_pending)
        return dq.to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype), None, None


def ring_attention(query, key, value, *, group, scale=None):
    """Causal ring attention; shapes as RingAttention. With a group of one rank, the local causal attention."""
    return RingAttention.apply(query, key, value, group, scale)


# ------------------------------------------------------------------------------------------- transformers hook
def ring_attention_function(group):
    """A transformers attention function (module, query `[b, h, s, d]`, key, value, attention_mask, ...) →
    (`[b, s, h, d]`, None) running the ring over `group`. Under Ulysses it is the core that DeepSpeed's wrapper calls
    after its all-to-all. The mask is ignored: rows are whole causal sequences (packed rows are refused with
    cp_size > 1 before start), and which chunks a rank holds follows from its cp rank."""

    def attend(module, query, key, value, attention_mask, *args, dropout: float = 0.0, scaling=None, **kwargs):
        if dropout:
            raise RuntimeError("ring attention has no attention dropout; set the model's attention_dropout to 0")
        return ring_attention(query, key, value, group=group, scale=scaling).transpose(1, 2).contiguous(), None

    attend.ring = True
    return attend


def _no_mask(*args, **kwargs):
    """Mask builder for the ring: transformers would build a dense `[s, s]` mask from the zigzag position_ids (they
    jump between the two chunks, which it reads as packed documents); the ring needs none."""
    return None


def install(impl: str, group):
    """Make transformers' `impl` the ring over `group`. Call it before DeepSpeed's
    UlyssesSPAttentionHF.register_with_transformers wraps `impl`, so Ulysses calls the ring as its core."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS[impl] = ring_attention_function(group)
    ALL_MASK_ATTENTION_FUNCTIONS[impl] = _no_mask
