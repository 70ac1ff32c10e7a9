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
log-sum-exp (the kernel's backward then gives each block's exact share of the gradient); the K/V gradients travel
around the ring with their K/V and arrive at their owner after the last step. The next K/V block's transfer is
started before the current block's kernel (async P2P: NCCL's own stream, gloo's threads), so it overlaps the compute.

Kernels (`block_forward`). On CUDA in bf16/fp16, cuDNN's SDPA op (`aten._scaled_dot_product_cudnn_attention`, the
fastest on H100/H200: ~1.7x flash at head_dim 128, experiments/attention_kernels), as torch's own context parallelism
rings it; flash (`aten._scaled_dot_product_flash_attention`) for a shape cuDNN refuses; on CPU torch's CPU flash op;
elsewhere (fp32 on CUDA) a math path. The first block says which one runs.

Packed rows. Documents are cut per document (`document_layout`): each into 2 x cp_size near-equal parts, slot j of
the row holding part j of every document, so cp rank r holds parts r and 2 cp_size - 1 - r of every document and
every rank does the same attention work per document (within a token row of it; tests/unit/test_ring.py). The data
adapter permutes each packed row into that order (`document_permutation`) and hands the ring the permuted row's
document ids (`ring_document_ids`); at each step the ring runs the kernel per pair of (query run, key run) of the
same document: in full where the key's part comes first, causally within the same part (`document_pairs`).

Why not torch's own context parallelism (torch.distributed.tensor.experimental.context_parallel, torch 2.13): its
ring is a DTensor dispatch rule for the CUDA SDPA kernels only (flash, efficient, cuDNN), so on CPU (sdpa runs
`_scaled_dot_product_flash_attention_for_cpu`) nothing is sharded; `context_parallel()` shards the model's input
buffers itself, whereas inside Ulysses the tensors are plain local tensors in the middle of the model; and its
templated ring (`_templated_ring_attention`) is private and takes no GQA. The kernels here are torch's own
(`torch.ops.aten` SDPA ops that return the log-sum-exp); this module only orders them and the exchanges.
"""

from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from framework.log import get_logger

log = get_logger(__name__)


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
KERNELS = ("cudnn", "flash", "math", "cpu")
"""Block kernels: cuDNN's SDPA op, torch's flash op (both CUDA, bf16/fp16), the `[sq, sk]`-scores math path (any
device and dtype) and torch's CPU flash op. Each returns the log-sum-exp the merge needs."""
_CUDNN_REFUSED = set()  # (head_dim, dtype, causal, sq, sk) shapes cuDNN raised on: flash from then on


def _repeat_kv(t: torch.Tensor, heads: int) -> torch.Tensor:
    return t if t.shape[1] == heads else t.repeat_interleave(heads // t.shape[1], dim=1)


def _sum_kv(t: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """Gradient of _repeat_kv: sum the copies of each KV head."""
    b, h, s, d = t.shape
    return t if h == kv_heads else t.view(b, kv_heads, h // kv_heads, s, d).sum(2)


def _flash_cuda(q) -> bool:
    return q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16)


def pick_kernel(q, preferred: str = "auto") -> str:
    """The kernel a block of `q` runs: cuDNN first on CUDA in bf16/fp16 (flash where cuDNN refuses a shape), the CPU
    flash op on CPU, math elsewhere (fp32 on CUDA). `preferred` ("flash", "math", ...) forces one (benchmarks)."""
    if preferred != "auto":
        return preferred
    if q.device.type == "cpu":
        return "cpu"
    return "cudnn" if _flash_cuda(q) else "math"


def block_forward(q, k, v, *, causal: bool, scale, kernel: str = "auto"):
    """Attention of one block: out `[b, h, sq, d]` (q's dtype), lse `[b, h, sq]` (fp32), and what the kernel's
    backward needs besides: (kernel name, its extra outputs). K/V have h_kv heads."""
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    kernel = pick_kernel(q, kernel)
    if kernel == "cudnn":
        key = (q.shape[-1], q.dtype, causal, q.shape[2], k.shape[2])
        if key not in _CUDNN_REFUSED:
            try:  # as torch's own context parallelism rings it (compute_log_sumexp=True; lse `[b, h, sq, 1]`)
                out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_cudnn_attention(
                    q.contiguous(), k.contiguous(), v.contiguous(), None, True, 0.0, causal, False, scale=scale
                )
                announce("cudnn")
                return out, lse.view(lse.shape[:3]).float(), ("cudnn", (cq, ck, mq, mk, seed, offset))
            except RuntimeError as e:
                _CUDNN_REFUSED.add(key)
                announce(
                    "flash",
                    f"cuDNN refused q {tuple(q.shape)} k {tuple(k.shape)} causal={causal}: "
                    f"{str(e).splitlines()[0][:120]}",
                )
        kernel = "flash"
    if kernel == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
        announce("cpu")
        return out, lse.float(), ("cpu", None)
    if kernel == "flash" and _flash_cuda(q):
        out, lse, cq, ck, mq, mk, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, causal, False, scale=scale
        )
        announce("flash")
        return out, lse.float(), ("flash", (cq, ck, mq, mk, seed, offset))
    announce("math")
    return (*_math_forward(q, k, v, causal=causal, scale=scale), ("math", None))


def block_backward(dout, q, k, v, out, lse, aux, *, causal: bool, scale):
    """Gradients of one block given the FINAL (merged) out and lse, which makes them exact shares of the whole;
    `aux`: block_forward's third result for this block (it names the kernel that ran the forward)."""
    kv_heads = k.shape[1]
    k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    kernel, extra = aux
    if kernel == "cudnn":  # the forward's extra outputs passed back, as torch's own context parallelism does
        cq, ck, mq, mk, seed, offset = extra
        dq, dk, dv = torch.ops.aten._scaled_dot_product_cudnn_attention_backward(
            dout.contiguous(),
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            out.contiguous(),
            lse.to(torch.float32).contiguous().unsqueeze(-1),
            seed,
            offset,
            None,
            cq,
            ck,
            mq,
            mk,
            0.0,
            causal,
            scale=scale,
        )
    elif kernel == "cpu":
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            dout, q, k, v, out, lse, 0.0, causal, scale=scale
        )
    elif kernel == "flash":
        cq, ck, mq, mk, seed, offset = extra
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
            dout, q, k, v, out, lse.to(torch.float32), cq, ck, mq, mk, 0.0, causal, seed, offset, scale=scale
        )
    else:
        dq, dk, dv = _math_backward(dout, q, k, v, out, lse, causal=causal, scale=scale)
    return dq, _sum_kv(dk, kv_heads), _sum_kv(dv, kv_heads)


_ANNOUNCED = set()


def announce(kernel: str, why: str = ""):
    """Say once per process (rank 0), at the ring's first block, which kernel its blocks actually run."""
    if kernel in _ANNOUNCED:
        return
    _ANNOUNCED.add(kernel)
    names = {
        "cudnn": "cuDNN (aten._scaled_dot_product_cudnn_attention)",
        "flash": "flash (aten._scaled_dot_product_flash_attention)",
        "cpu": "math on CPU (aten._scaled_dot_product_flash_attention_for_cpu)",
        "math": "math ([sq, sk] scores in fp32)",
    }
    log.info(f"ring attention: blocks run {names[kernel]}" + (f" ({why})" if why else ""))


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


# ------------------------------------------------------------------------------------------------ packed rows
def document_layout(lengths: Sequence[int], size: int) -> List[List[Tuple[int, int, int]]]:
    """Per-document zigzag: each document is cut into 2 size near-equal parts (part j: in-document positions
    [start, end)), and slot j of the row holds part j of every document, in document order. The parts a document's
    length does not divide evenly get one token more, taken round-robin over the slots across the row's documents,
    so every slot holds exactly s / (2 size) tokens when 2 size divides s. Returns, per slot, [(doc, start, end)]
    (empty parts left out). One document (an unpacked row) gives the plain zigzag chunks."""
    slots = 2 * size
    layout: List[List[Tuple[int, int, int]]] = [[] for _ in range(slots)]
    extra_at = 0
    for doc, n in enumerate(lengths):
        base, extra = divmod(n, slots)
        sizes = [base] * slots
        for i in range(extra):
            sizes[(extra_at + i) % slots] += 1
        extra_at = (extra_at + extra) % slots
        start = 0
        for j, m in enumerate(sizes):
            if m:
                layout[j].append((doc, start, start + m))
            start += m
    return layout


def document_permutation(position_ids: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """For one packed row's `[s]` position_ids (0 where a document starts): the order that puts it in the
    per-document zigzag layout (`perm`: row index of the token at each place, `[s]`), and the document index of each
    token in that order (`[s]` int32). Chunk j of the permuted row (2 size equal chunks) is slot j of
    `document_layout`, so framework.data.adapter.shard_row's zigzag chunks give each cp rank its two slots."""
    starts = (torch.nonzero(position_ids == 0).view(-1)).tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [position_ids.shape[0]]
    lengths = [e - a for a, e in zip(bounds, bounds[1:])]
    perm, docs = [], []
    for slot in document_layout(lengths, size):
        for doc, a, e in slot:
            perm.extend(range(bounds[doc] + a, bounds[doc] + e))
            docs.extend([doc] * (e - a))
    return torch.tensor(perm, dtype=torch.long), torch.tensor(docs, dtype=torch.int32)


def _runs(ids: List[int], slot: int, offset: int) -> List[Tuple[int, int, int, int]]:
    """Runs of equal document ids in a slot's token list: (doc, start, end, slot), indices shifted by offset."""
    out, a = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[a]:
            out.append((ids[a], offset + a, offset + i, slot))
            a = i
    return out


def document_pairs(docs: List[int], rank: int, src: int, size: int, qp: str, kp: str):
    """The kernel calls of one ring step on a packed row: [(q start, q end, k start, k end, causal)] in the
    coordinates of the step's query part (of `rank`'s tokens) and key part (of `src`'s). A query run and a key run
    of one document are computed in full where the key's slot comes first, causally where it is the same slot, and
    not at all where it comes after. docs: the permuted row's document ids (`document_permutation`)."""
    chunk = len(docs) // (2 * size)

    def part(r: int, p: str):
        a, b = r, 2 * size - 1 - r
        halves = [(a, 0), (b, 1)] if p == "all" else [(a, 0)] if p == "first" else [(b, 1)]
        runs = []
        for i, (slot, half) in enumerate(halves):
            runs += _runs(docs[slot * chunk : (slot + 1) * chunk], slot, chunk * i)
        return runs

    by_doc = {}
    for doc, ks, ke, slot in part(src, kp):
        by_doc.setdefault(doc, []).append((ks, ke, slot))
    pairs = []
    for doc, qs, qe, qslot in part(rank, qp):
        for ks, ke, kslot in by_doc.get(doc, ()):
            if kslot <= qslot:
                pairs.append((qs, qe, ks, ke, kslot == qslot))
    return pairs


class _Plan:
    """Per ring step and row, the document pairs of packed rows (None: whole causal rows). Built once per forward
    from `ring_document_ids` (one CPU-GPU sync) and reused by every layer while the same tensor comes back."""

    def __init__(self):
        self.docs, self.steps = None, None

    def get(self, docs: Optional[torch.Tensor], rank: int, size: int):
        if docs is None:
            return None
        if docs is not self.docs:
            rows = docs.view(-1, docs.shape[-1]).tolist()
            self.steps = [
                [document_pairs(row, rank, src, size, qp, kp) for row in rows]
                for src, qp, kp, _ in ring_steps(rank, size)
            ]
            self.docs = docs
        return self.steps


def _forward_docs(q, k, v, pairs, *, scale, kernel):
    """One step on a packed row (b = 1): the kernel per document pair, merged per query run."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    lse = torch.full(q.shape[:3], float("-inf"), dtype=torch.float32, device=q.device)
    aux = []
    for qs, qe, ks, ke, causal in pairs:
        o, l, a = block_forward(
            q[:, :, qs:qe], k[:, :, ks:ke], v[:, :, ks:ke], causal=causal, scale=scale, kernel=kernel
        )
        aux.append(a)
        _merge(out[:, :, qs:qe], lse[:, :, qs:qe], "all", o, l)
    return out, lse, aux


def step_forward(q, k, v, *, causal, scale, kernel, pairs):
    """One ring step: (out, lse, aux). pairs: None (whole causal rows: one kernel call) or, per row, its
    document pairs."""
    if pairs is None:
        o, l, aux = block_forward(q, k, v, causal=causal, scale=scale, kernel=kernel)
        return o.float(), l, aux
    rows = [
        _forward_docs(q[r : r + 1], k[r : r + 1], v[r : r + 1], p, scale=scale, kernel=kernel)
        for r, p in enumerate(pairs)
    ]
    return torch.cat([o for o, _, _ in rows]), torch.cat([l for _, l, _ in rows]), [a for _, _, a in rows]


def step_backward(dout, q, k, v, out, lse, aux, *, causal, scale, pairs):
    """Gradients (dq, dk, dv) of one ring step, given the final out and lse. dq fp32; dk/dv fp32."""
    if pairs is None:
        return [
            g.float() for g in block_backward(dout, q, k, v, out, lse.contiguous(), aux, causal=causal, scale=scale)
        ]
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros_like(dk)
    for r, (row_pairs, row_aux) in enumerate(zip(pairs, aux)):
        for (qs, qe, ks, ke, c), a in zip(row_pairs, row_aux):
            q_ = (r, slice(None), slice(qs, qe))
            k_ = (r, slice(None), slice(ks, ke))
            gq, gk, gv = block_backward(
                dout[q_][None],
                q[q_][None],
                k[k_][None],
                v[k_][None],
                out[q_][None],
                lse[q_][None].contiguous(),
                a,
                causal=c,
                scale=scale,
            )
            dq[q_] += gq[0].float()
            dk[k_] += gk[0].float()
            dv[k_] += gv[0].float()
    return dq, dk, dv


# -------------------------------------------------------------------------------------------------- the ring
def _shift(t: torch.Tensor, group):
    """Start sending `t` to the next rank of the ring and receiving the previous rank's; returns (buffer, requests).
    Every rank of the group must call it, in the same order. Asynchronous (NCCL runs it on its own stream, gloo on
    its threads): the transfer overlaps whatever the caller computes before `_wait`."""
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    buf = torch.empty_like(t)
    ops = [
        dist.P2POp(dist.isend, t, dist.get_global_rank(group, (rank + 1) % size), group),
        dist.P2POp(dist.irecv, buf, dist.get_global_rank(group, (rank - 1) % size), group),
    ]
    return buf, dist.batch_isend_irecv(ops)


def _wait(pending):
    buf, reqs = pending
    for r in reqs:
        r.wait()
    return buf


def _merge(out, lse, part: str, o, l):
    """Fold a block's (o, l) into the running fp32 (out, lse) for the query `part`, in place. A block row that saw no
    key (l = -inf, o = 0) changes nothing; a running row that has none yet takes the block's."""
    out_p, lse_p = _part(out, part), _part(lse, part)
    new = torch.logaddexp(lse_p, l)
    safe = torch.where(torch.isinf(new), torch.zeros_like(new), new)  # both -inf: keep 0 rather than NaN
    out_p.mul_(torch.exp(lse_p - safe)[..., None]).add_(o.float() * torch.exp(l - safe)[..., None])
    lse_p.copy_(new)


class RingAttention(torch.autograd.Function):
    """Causal ring attention over `group`. q `[b, h, s_cp, d]`, k/v `[b, h_kv, s_cp, d]` (this rank's two zigzag
    chunks) → `[b, h, s_cp, d]`. Every rank of the group must call forward and backward (point-to-point exchanges).

    overlap: start the next K/V block's transfer before this block's kernel (and the K/V gradient's before the next
    block's backward); False exchanges after each kernel and waits at once (the plain ring, for tests). plan: per
    step and row the document pairs of packed rows (`_Plan`), or None for whole causal rows. kernel: "auto" or one
    of KERNELS."""

    @staticmethod
    def forward(ctx, q, k, v, group, scale, overlap=True, plan=None, kernel="auto"):
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        kv = torch.stack([k, v]).contiguous()  # one message per step
        out = lse = None
        ctx.aux = []  # per step, what the kernel's backward needs besides (small; not activations)
        for i, (_, qp, kp, causal) in enumerate(ring_steps(rank, size)):
            last = i == size - 1
            pending = _shift(kv, group) if overlap and not last else None  # overlaps with this step's kernel
            o, l, aux = step_forward(
                _part(q, qp),
                _part(kv[0], kp),
                _part(kv[1], kp),
                causal=causal,
                scale=scale,
                kernel=kernel,
                pairs=None if plan is None else plan[i],
            )
            ctx.aux.append(aux)
            if out is None:
                out, lse = o, l.clone()
            else:
                _merge(out, lse, qp, o, l)
            if not overlap and not last:
                pending = _shift(kv, group)
            if pending is not None:
                kv = _wait(pending)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.scale, ctx.overlap, ctx.plan = group, scale, overlap, plan
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        group, scale, overlap, plan = ctx.group, ctx.scale, ctx.overlap, ctx.plan
        rank, size = dist.get_rank(group), dist.get_world_size(group)
        dout = dout.contiguous()
        dq = torch.zeros_like(q, dtype=torch.float32)
        kv = torch.stack([k, v]).contiguous()
        dkv_pending = None
        for i, (_, qp, kp, causal) in enumerate(ring_steps(rank, size)):
            last = i == size - 1
            kv_pending = _shift(kv, group) if overlap and not last else None
            q_, o_, l_, do_ = (_part(t, qp) for t in (q, out, lse, dout))
            gq, gk, gv = step_backward(
                do_,
                q_,
                _part(kv[0], kp),
                _part(kv[1], kp),
                o_,
                l_,
                ctx.aux[i],
                causal=causal,
                scale=scale,
                pairs=None if plan is None else plan[i],
            )
            _part(dq, qp).add_(gq)
            # the gradient of the K/V held now: what the ranks before added, plus this rank's share
            dkv = torch.zeros_like(kv, dtype=torch.float32) if dkv_pending is None else _wait(dkv_pending)
            _part(dkv[0], kp).add_(gk)
            _part(dkv[1], kp).add_(gv)
            dkv_pending = _shift(dkv, group)  # after the last step this takes each K/V gradient home
            if not overlap and not last:
                kv_pending = _shift(kv, group)
            if kv_pending is not None:
                kv = _wait(kv_pending)
            if not overlap:
                dkv_pending = (_wait(dkv_pending), [])
        dkv = _wait(dkv_pending)
        return dq.to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype), None, None, None, None, None


def ring_attention(
    query, key, value, *, group, scale=None, overlap: bool = True, documents=None, plan=None, kernel: str = "auto"
):
    """Causal ring attention; shapes as RingAttention. With a group of one rank, the local causal attention.
    documents: `[b, s]` document ids of the packed rows in the per-document zigzag order (`document_permutation`;
    s = s_cp x cp_size, the whole row), or None for whole causal rows. plan: a `_Plan` to cache the documents' pairs
    in across calls."""
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    steps = (plan or _Plan()).get(documents, rank, size)
    return RingAttention.apply(query, key, value, group, scale, overlap, steps, kernel)


# ------------------------------------------------------------------------------------------- transformers hook
def ring_attention_function(group):
    """A transformers attention function (module, query `[b, h, s, d]`, key, value, attention_mask, ...) →
    (`[b, s, h, d]`, None) running the ring over `group`. Under Ulysses it is the core that DeepSpeed's wrapper calls
    after its all-to-all. The mask is ignored: a row is one causal sequence in the zigzag layout, or, when the batch
    carries `ring_document_ids` (framework.data.adapter adds them to packed rows, the model passes them on), packed
    documents in the per-document zigzag layout, kept apart."""
    plan = _Plan()

    def attend(module, query, key, value, attention_mask, *args, dropout: float = 0.0, scaling=None, **kwargs):
        if dropout:
            raise RuntimeError("ring attention has no attention dropout; set the model's attention_dropout to 0")
        documents = kwargs.get("ring_document_ids")
        if documents is not None and documents.shape[-1] != query.shape[2] * dist.get_world_size(group):
            raise RuntimeError(
                f"ring_document_ids cover {documents.shape[-1]} positions, but the ring's "
                f"{dist.get_world_size(group)} ranks hold {query.shape[2]} each"
            )
        out = ring_attention(query, key, value, group=group, scale=scaling, documents=documents, plan=plan)
        return out.transpose(1, 2).contiguous(), None

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
