"""The ring (framework.attention.ring) against plain causal SDPA on the whole sequence: output and the gradients of
query, key and value, on cp gloo processes, with GQA (4 query heads, 2 KV heads), each rank holding its two zigzag
chunks. The kernels are torch's CPU flash-attention ops; the merge, the exchanges and the backward are ours."""
import os

import pytest
import torch
import torch.multiprocessing as mp

from framework.launch import free_port

pytestmark = pytest.mark.slow

B, H, HKV, S, D = 2, 4, 2, 48, 16


def _entry(rank, size, port, out_dir):
    import torch.distributed as dist

    from framework.attention.ring import ring_attention, zigzag_chunks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    torch.manual_seed(0)  # the same full tensors on every rank
    q, k, v, dout = (torch.randn(B, h, S, D, dtype=torch.float64).float() for h in (H, HKV, HKV, H))
    chunk = S // (2 * size)
    idx = torch.cat([torch.arange(c * chunk, (c + 1) * chunk) for c in zigzag_chunks(rank, size)])
    ql, kl, vl = (t[:, :, idx].clone().requires_grad_() for t in (q, k, v))
    out = ring_attention(ql, kl, vl, group=dist.group.WORLD, scale=0.3)
    out.backward(dout[:, :, idx])
    torch.save({"idx": idx, "out": out.detach(), "dq": ql.grad, "dk": kl.grad, "dv": vl.grad},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("size", [2, 3])
def test_ring_matches_causal_sdpa_forward_and_backward(tmp_path, size):
    mp.spawn(_entry, args=(size, free_port(), str(tmp_path)), nprocs=size, join=True)
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(B, h, S, D, dtype=torch.float64).float().requires_grad_() for h in (H, HKV, HKV, H))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True)
    ref.backward(dout.detach())
    got = {name: torch.zeros_like(t) for name, t in (("out", ref), ("dq", q), ("dk", k), ("dv", v))}
    for r in range(size):
        part = torch.load(tmp_path / f"rank{r}.pt")
        for name in got:
            got[name][:, :, part["idx"]] = part[name]
    want = {"out": ref.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)
