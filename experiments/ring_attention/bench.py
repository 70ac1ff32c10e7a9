"""Does ring attention on cuDNN's kernel come within 1.25x of one cuDNN call? Ring attention
(framework.attention.ring) with cp_size simulated in one process, against one SDPA call on the same (whole) sequence,
causal forward + backward, bf16, 8B head shape by default (32 q / 8 kv heads, head_dim 128).

    python experiments/ring_attention/bench.py                                     # cp 2, 64K and 128K per rank
    python experiments/ring_attention/bench.py --cp 2 4 --per-rank 16384 --heads 16 --kv-heads 4

For each ring rank the script runs exactly the kernel calls, merges and gradient sums of the ring's forward and
backward (ring_steps / block_forward / _merge / block_backward, the module's own functions), with the K/V of the other
ranks sliced from the full tensors instead of received: no communication is timed (in the ring it is overlapped with
the kernels). Every rank does the same work (tests/unit/test_ring.py), so the ring's time for the whole sequence is
the sum over the ranks. The ring runs twice: on flash (the kernel it called before) and on what it picks now
(cuDNN, flash where cuDNN refuses); beside one SDPA call forced to cuDNN and one forced to flash, over the same
tokens. The error column is the ring's largest difference to the one cuDNN call's output (both bf16).
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from framework.attention.ring import _merge, _part, block_backward, block_forward, ring_steps, zigzag_chunks


def rank_tensors(t, rank, size):
    """Rank `rank`'s two zigzag chunks of a `[b, h, s, d]` tensor."""
    chunks = t.chunk(2 * size, dim=2)
    return torch.cat([chunks[c] for c in zigzag_chunks(rank, size)], dim=2).contiguous()


def ring_rank(q, k, v, dout, rank, size, scale):
    """One ring rank's forward and backward, K/V of other ranks taken from the full tensors (no exchange)."""
    ql, dl = rank_tensors(q, rank, size), rank_tensors(dout, rank, size)
    kvs = {r: (rank_tensors(k, r, size), rank_tensors(v, r, size)) for r in range(size)}  # setup, not timed below
    return ql, dl, kvs


def ring_forward_backward(ql, dl, kvs, rank, size, scale, kernel="auto"):
    out = lse = None
    auxes = []
    for src, qp, kp, causal in ring_steps(rank, size):
        k, v = kvs[src]
        o, l, aux = block_forward(_part(ql, qp), _part(k, kp), _part(v, kp), causal=causal, scale=scale, kernel=kernel)
        auxes.append(aux)
        if out is None:
            out, lse = o.float(), l.clone()
        else:
            _merge(out, lse, qp, o, l)
    out = out.to(ql.dtype)
    dq = torch.zeros_like(ql, dtype=torch.float32)
    for (src, qp, kp, causal), aux in zip(ring_steps(rank, size), auxes):
        k, v = kvs[src]
        gq, gk, gv = block_backward(
            _part(dl, qp).contiguous(),
            _part(ql, qp),
            _part(k, kp),
            _part(v, kp),
            _part(out, qp),
            _part(lse, qp).contiguous(),
            aux,
            causal=causal,
            scale=scale,
        )
        _part(dq, qp).add_(gq.float())
        dkv = torch.zeros(2, *k.shape, dtype=torch.float32, device=k.device)  # the travelling K/V gradient
        _part(dkv[0], kp).add_(gk.float())
        _part(dkv[1], kp).add_(gv.float())
    return out, dq


def timed(fn, reps):
    """Seconds per call (after one warm-up call) and the last call's result."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        res = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps, res


def sdpa_fwd_bwd(q, k, v, dout, backend):
    def run():
        qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
        with sdpa_kernel([backend]):
            o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)
        o.backward(dout)
        return o.detach()

    return run


def ring_total(q, k, v, dout, cp, scale, kernel, reps):
    """Sum over the ring's ranks of one rank's fwd+bwd time, and the whole output `[b, h, s, d]` put back in order."""
    total, full = 0.0, torch.empty_like(q)
    chunk = q.shape[2] // (2 * cp)
    for r in range(cp):
        a = ring_rank(q, k, v, dout, r, cp, scale)
        t, (out, _) = timed(lambda a=a, r=r: ring_forward_backward(*a, r, cp, scale, kernel), reps)
        total += t
        for i, c in enumerate(zigzag_chunks(r, cp)):
            full[:, :, c * chunk : (c + 1) * chunk] = out[:, :, i * chunk : (i + 1) * chunk]
        del a, out
    return total, full


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-rank", type=int, nargs="+", default=[65536, 131072], help="tokens per ring rank")
    ap.add_argument("--cp", type=int, nargs="+", default=[2])
    ap.add_argument("--heads", type=int, default=32, help="query heads the ring sees (8B without Ulysses: 32)")
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    dev, dt = "cuda", torch.bfloat16
    print(
        f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
        f"heads {args.heads}/{args.kv_heads}, head_dim {args.head_dim}, bf16, causal fwd+bwd"
    )
    print(
        "| s per rank | cp | s | one cuDNN call ms | one flash call ms | ring on flash (before) ms | "
        "ring on cuDNN (after) ms | after / cuDNN call | before / cuDNN call | after TFLOP/s | "
        "max err after vs cuDNN call |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for per_rank in args.per_rank:
        for cp in args.cp:
            s = per_rank * cp
            torch.manual_seed(0)
            q, dout = (torch.randn(1, args.heads, s, args.head_dim, device=dev, dtype=dt) for _ in range(2))
            k, v = (torch.randn(1, args.kv_heads, s, args.head_dim, device=dev, dtype=dt) for _ in range(2))
            scale = args.head_dim**-0.5
            t_cudnn, ref = timed(sdpa_fwd_bwd(q, k, v, dout, SDPBackend.CUDNN_ATTENTION), args.reps)
            t_flash, _ = timed(sdpa_fwd_bwd(q, k, v, dout, SDPBackend.FLASH_ATTENTION), args.reps)
            before, _ = ring_total(q, k, v, dout, cp, scale, "flash", args.reps)
            after, full = ring_total(q, k, v, dout, cp, scale, "auto", args.reps)
            err = (full.float() - ref.float()).abs().max().item()
            flops = 3.5 * 2 * s * s * args.heads * args.head_dim  # causal: half of 4 s^2 h d per pass, bwd 2.5x fwd
            print(
                f"| {per_rank} | {cp} | {s} | {t_cudnn * 1e3:.0f} | {t_flash * 1e3:.0f} | {before * 1e3:.0f} | "
                f"{after * 1e3:.0f} | {after / t_cudnn:.2f} | {before / t_cudnn:.2f} | {flops / after / 1e12:.0f} | "
                f"{err:.1e} |",
                flush=True,
            )
            del q, k, v, dout, ref, full
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
