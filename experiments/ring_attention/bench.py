"""What does the ring's merge cost on one GPU? Ring attention (framework.attention.ring) with cp_size simulated in one
process, against plain SDPA on the same sequence, causal forward + backward, bf16.

    python experiments/ring_attention/bench.py                      # 8B under sp 8 (4 q / 1 kv heads), 64K-256K
    python experiments/ring_attention/bench.py --heads 16 --kv-heads 4 --cp 2 4 8 --lengths 65536 131072

For each ring rank the script runs exactly the kernel calls, merges and gradient sums of the ring's forward and
backward (ring_steps / block_forward / _merge / block_backward, the module's own functions), with the K/V of the other
ranks sliced from the full tensors instead of received: no communication is timed. Every rank does the same work
(tests/unit/test_ring.py), so the ring's time for the whole sequence is the sum over the ranks; divided by cp it is
one GPU's share. Reported beside SDPA's default dispatch (cuDNN on H100/H200) and forced flash (the kernel the ring
calls), with the ring's largest error against SDPA (fp32 reference) as a check of the CUDA path.
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


def ring_forward_backward(ql, dl, kvs, rank, size, scale):
    out = lse = None
    auxes = []
    for src, qp, kp, causal in ring_steps(rank, size):
        k, v = kvs[src]
        o, l, aux = block_forward(_part(ql, qp), _part(k, kp), _part(v, kp), causal=causal, scale=scale)
        auxes.append(aux)
        if out is None:
            out, lse = o.float(), l.clone()
        else:
            _merge(out, lse, qp, o, l)
    out = out.to(ql.dtype)
    dq = torch.zeros_like(ql, dtype=torch.float32)
    for (src, qp, kp, causal), aux in zip(ring_steps(rank, size), auxes):
        k, v = kvs[src]
        gq, gk, gv = block_backward(_part(dl, qp).contiguous(), _part(ql, qp), _part(k, kp), _part(v, kp),
                                    _part(out, qp), _part(lse, qp).contiguous(), aux, causal=causal, scale=scale)
        _part(dq, qp).add_(gq.float())
        dkv = torch.zeros(2, *k.shape, dtype=torch.float32, device=k.device)  # the travelling K/V gradient
        _part(dkv[0], kp).add_(gk.float())
        _part(dkv[1], kp).add_(gv.float())
    return out, dq


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def sdpa_fwd_bwd(q, k, v, dout, backend=None):
    def run():
        qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
        if backend is None:
            o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)
        else:
            with sdpa_kernel([backend]):
                o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)
        o.backward(dout)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[65536, 131072, 262144])
    ap.add_argument("--cp", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--heads", type=int, default=4, help="query heads after Ulysses (8B under sp 8: 4)")
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    dev, dt = "cuda", torch.bfloat16
    print(f"card: {torch.cuda.get_device_name()}, torch {torch.__version__}, heads {args.heads}/{args.kv_heads}, "
          f"head_dim {args.head_dim}, bf16, causal fwd+bwd")
    print("| s | cp | SDPA default ms | SDPA flash ms | ring total ms (sum over ranks) | ring / default | "
          "ring / flash | ring TFLOP/s | max err vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in args.lengths:
        torch.manual_seed(0)
        q, dout = (torch.randn(1, args.heads, s, args.head_dim, device=dev, dtype=dt) for _ in range(2))
        k, v = (torch.randn(1, args.kv_heads, s, args.head_dim, device=dev, dtype=dt) for _ in range(2))
        scale = args.head_dim ** -0.5
        t_def = timed(sdpa_fwd_bwd(q, k, v, dout), args.reps)
        t_flash = timed(sdpa_fwd_bwd(q, k, v, dout, SDPBackend.FLASH_ATTENTION), args.reps)
        ref = None
        if s <= 65536:  # fp32 math reference of the forward output, for the error column
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True,
                                                     enable_gqa=True)
        flops = 3.5 * 2 * s * s * args.heads * args.head_dim  # causal: half of 4 s^2 h d per pass, bwd 2.5x fwd
        for cp in args.cp:
            ranks = [ring_rank(q, k, v, dout, r, cp, scale) for r in range(cp)]
            total = sum(timed(lambda r=r, a=a: ring_forward_backward(*a, r, cp, scale), args.reps)
                        for r, a in enumerate(ranks))
            err = "-"
            if ref is not None:
                full = torch.empty_like(ref)
                chunk = s // (2 * cp)
                for r, a in enumerate(ranks):
                    out, _ = ring_forward_backward(*a, r, cp, scale)
                    for i, c in enumerate(zigzag_chunks(r, cp)):
                        full[:, :, c * chunk:(c + 1) * chunk] = out[:, :, i * chunk:(i + 1) * chunk].float()
                err = f"{(full - ref).abs().max().item():.1e}"
            print(f"| {s} | {cp} | {t_def * 1e3:.1f} | {t_flash * 1e3:.1f} | {total * 1e3:.1f} | {total / t_def:.2f} | "
                  f"{total / t_flash:.2f} | {flops / total / 1e12:.0f} | {err} |", flush=True)
            del ranks
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
