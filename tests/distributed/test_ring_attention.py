"""The ring (framework.attention.ring) against plain causal SDPA on the whole sequence: output and the gradients of
query, key and value, on cp gloo processes, with GQA (4 query heads, 2 KV heads), each rank holding its two zigzag
chunks. The kernels are torch's CPU flash-attention ops; the merge, the exchanges and the backward are ours.

Checked both ways the ring can exchange: overlapped (the next K/V block's transfer started before the current
block's kernel) and plain (exchange after each kernel); and on packed rows (documents of uneven lengths in the
per-document zigzag layout) against causal SDPA run on each document alone."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from framework.launch import free_port

pytestmark = pytest.mark.slow

B, H, HKV, S, D = 2, 4, 2, 48, 16
DOC_LENGTHS = [[7, 19, 1, 13, 8], [48]]  # row 0: five documents of uneven lengths, row 1: one (mixed in a batch)


def _full_tensors():
    torch.manual_seed(0)  # the same full tensors on every rank
    return [torch.randn(B, h, S, D, dtype=torch.float64).float() for h in (H, HKV, HKV, H)]


def _position_ids():
    return torch.stack([torch.cat([torch.arange(n) for n in row]) for row in DOC_LENGTHS])


def _entry(rank, size, port, out_dir, packed):
    import torch.distributed as dist

    from framework.attention.ring import document_permutation, ring_attention, zigzag_chunks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    q, k, v, dout = _full_tensors()
    chunk = S // (2 * size)
    local = torch.cat([torch.arange(c * chunk, (c + 1) * chunk) for c in zigzag_chunks(rank, size)])
    if packed:  # row order → per-document zigzag order, then the plain zigzag chunks of that
        perms, docs = zip(*(document_permutation(p, size) for p in _position_ids()))
        idx, documents = torch.stack(perms)[:, local], torch.stack(docs)
    else:
        idx, documents = local.expand(B, -1), None
    take = lambda t: torch.stack([t[r][:, idx[r]] for r in range(B)])
    saved = {"idx": idx}
    for overlap in (True, False):
        ql, kl, vl = (take(t).clone().requires_grad_() for t in (q, k, v))
        out = ring_attention(ql, kl, vl, group=dist.group.WORLD, scale=0.3, overlap=overlap, documents=documents)
        out.backward(take(dout))
        saved[overlap] = {"out": out.detach(), "dq": ql.grad, "dk": kl.grad, "dv": vl.grad}
    torch.save(saved, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _reference(packed):
    """Causal SDPA over each row (or each document of it), with its gradients."""
    q, k, v, dout = (t.requires_grad_() for t in _full_tensors())
    bounds = [[0]] * B
    if packed:
        bounds = [torch.tensor([0] + row).cumsum(0).tolist()[:-1] for row in DOC_LENGTHS]
    rows = []
    for r in range(B):
        ends = bounds[r][1:] + [S]
        rows.append(
            torch.cat(
                [
                    torch.nn.functional.scaled_dot_product_attention(
                        q[r : r + 1, :, a:e],
                        k[r : r + 1, :, a:e],
                        v[r : r + 1, :, a:e],
                        is_causal=True,
                        scale=0.3,
                        enable_gqa=True,
                    )
                    for a, e in zip(bounds[r], ends)
                ],
                dim=2,
            )
        )
    ref = torch.cat(rows)
    ref.backward(dout.detach())
    return {"out": ref.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}


def _gathered(tmp_path, size, overlap, like):
    got = {name: torch.zeros_like(t) for name, t in like.items()}
    for r in range(size):
        part = torch.load(tmp_path / f"rank{r}.pt")
        for name in got:
            for row in range(B):
                got[name][row][:, part["idx"][row]] = part[overlap][name][row]
    return got


@pytest.mark.parametrize("packed", [False, True], ids=["rows", "packed"])
@pytest.mark.parametrize("size", [2, 3])
def test_ring_matches_causal_sdpa_overlapped_and_plain(tmp_path, size, packed):
    if packed and size == 3:
        pytest.skip("48 tokens in 6 slots: covered by size 2 here and by the balance test at 3")
    mp.spawn(_entry, args=(size, free_port(), str(tmp_path), packed), nprocs=size, join=True)
    want = _reference(packed)
    overlapped, plain = _gathered(tmp_path, size, True, want), _gathered(tmp_path, size, False, want)
    for name in want:
        torch.testing.assert_close(overlapped[name], want[name], rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(overlapped[name], plain[name], rtol=0, atol=0, msg=name)  # same sums, same order
    if packed:  # the check can tell: attention across documents would give another output
        assert (want["out"] - _reference(False)["out"]).abs().max() > 1e-2
