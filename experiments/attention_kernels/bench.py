"""Causal attention fwd+bwd on one GPU at the shapes our runs give the kernel, one line per (shape, variant).

    python3 experiments/attention_kernels/bench.py [--packed] [LENGTH ...]   (one GPU; prints a table last)

Shapes: Llama-3.1-8B under Ulysses sp_size=2 (16 query heads, 4 KV heads per rank, head_dim 128) and Llama-3.2-1B
on one GPU (32 query heads, 8 KV heads, head_dim 64). Variants: SDPA with enable_gqa=True (what transformers passes
when there is no mask) or with the KV heads repeated first, each under the default dispatch and forced to cuDNN or
flash. --packed: varlen_attn (what packed rows run) on one document and on 2K-token documents, beside SDPA. FLOPs: 3.5 x
2 s^2 h d (causal forward, backward 2.5x forward)."""

import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

B = SDPBackend
VARIANTS = {
    "sdpa gqa, default": (True, None),
    "sdpa gqa, cudnn": (True, [B.CUDNN_ATTENTION]),
    "sdpa gqa, flash": (True, [B.FLASH_ATTENTION]),
    "sdpa gqa, priority cudnn>flash": (True, "priority"),
    "sdpa repeat_kv, default": (False, None),
    "sdpa repeat_kv, cudnn": (False, [B.CUDNN_ATTENTION]),
}
PACKED = {  # one 64K row: one document, or documents of 2K tokens (FLOPs counted for the one-document causal row)
    "sdpa default, 1 document": (True, None),
    "varlen_attn, 1 document": (True, "varlen"),
    "varlen_attn, 32 documents of 2K": (True, "varlen2k"),
}


def run(q, k, v, gqa, backends):
    if backends in ("varlen", "varlen2k"):  # as framework.attention.packed.sdpa_varlen calls it
        from torch.nn.attention.varlen import varlen_attn

        s = q.shape[2]
        doc = s if backends == "varlen" else 2048
        cu = torch.arange(0, s + 1, doc, dtype=torch.int32, device=q.device)
        rep = q.shape[1] // k.shape[1]
        qq, kk, vv = (t[0].transpose(0, 1) for t in (q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)))
        return varlen_attn(qq, kk, vv, cu, cu, doc, doc, window_size=(-1, 0))
    if not gqa:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    kw = dict(is_causal=True, enable_gqa=gqa and k.shape[1] != q.shape[1])
    if backends is None:
        return F.scaled_dot_product_attention(q, k, v, **kw)
    if backends == "priority":
        with sdpa_kernel([B.CUDNN_ATTENTION, B.FLASH_ATTENTION, B.EFFICIENT_ATTENTION, B.MATH], set_priority=True):
            return F.scaled_dot_product_attention(q, k, v, **kw)
    with sdpa_kernel(backends):
        return F.scaled_dot_product_attention(q, k, v, **kw)


def time_one(s, h, hkv, d, gqa, backends, reps=3):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, h, s, d, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    k = torch.randn(1, hkv, s, d, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    v = torch.randn(1, hkv, s, d, device="cuda", dtype=torch.bfloat16, generator=g, requires_grad=True)
    out = run(q, k, v, gqa, backends)
    out.float().sum().backward()  # warm-up (and the error, if this variant cannot run)
    torch.cuda.synchronize()
    t = []
    for _ in range(reps):
        q.grad = k.grad = v.grad = None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        o = run(q, k, v, gqa, backends)
        o.backward(torch.ones_like(o))
        torch.cuda.synchronize()
        t.append(time.perf_counter() - t0)
    return min(t), 3.5 * 2 * s * s * h * d / min(t) / 1e12


def main():
    shapes = [("8B sp2 (16q/4kv, d128)", 16, 4, 128), ("1B sp1 (32q/8kv, d64)", 32, 8, 64)]
    args = sys.argv[1:]
    variants = VARIANTS
    if args and args[0] == "--packed":
        args, variants = args[1:], PACKED
    lengths = [int(x) for x in args] or [65536, 131072, 262144]
    print(torch.__version__, torch.cuda.get_device_name(), "cudnn", torch.backends.cudnn.version(), flush=True)
    rows = []
    for name, h, hkv, d in shapes:
        for s in lengths:
            if d == 64 and s > 131072:
                continue
            for var, (gqa, backends) in variants.items():
                try:
                    sec, tf = time_one(s, h, hkv, d, gqa, backends)
                    cell = f"{sec * 1e3:.0f} ms, {tf:.0f} TFLOP/s"
                except Exception as exc:  # noqa: BLE001
                    cell = f"cannot run: {str(exc).splitlines()[0][:90]}"
                torch.cuda.empty_cache()
                print(f"{name} s={s} {var}: {cell}", flush=True)
                rows.append((name, s, var, cell))
    print("\n| shape | seq | variant | fwd+bwd |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
