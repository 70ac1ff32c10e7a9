"""Ring attention's plan (framework.attention.ring.ring_steps) on the zigzag layout: over the ring steps of all cp
ranks, every causal (query, key) pair of the row is computed exactly once, and every rank computes as many pairs as
every other (the load balance). The pairs are counted on global positions, from the plan the ring runs."""

import pytest
import torch

from framework.attention.ring import _part, ring_steps, zigzag_chunks


def positions(rank: int, size: int, chunk: int) -> torch.Tensor:
    """Global positions of the tokens cp rank `rank` holds (its two zigzag chunks, in order)."""
    return torch.cat([torch.arange(c * chunk, (c + 1) * chunk) for c in zigzag_chunks(rank, size)])


def pairs_of(rank: int, size: int, chunk: int) -> list:
    """(query position, key position) pairs the rank computes, over all its ring steps."""
    out = []
    for src, qp, kp, causal in ring_steps(rank, size):
        q = _part(positions(rank, size, chunk).view(1, 1, -1), qp).flatten()
        k = _part(positions(src, size, chunk).view(1, 1, -1), kp).flatten()
        for i, qpos in enumerate(q.tolist()):
            for j, kpos in enumerate(k.tolist()):
                if not causal or j <= i:  # the kernel's causal mask is on local indices
                    out.append((qpos, kpos))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_ring_covers_each_causal_pair_once_with_equal_work_per_rank(size):
    chunk = 3
    s = 2 * size * chunk
    per_rank = [pairs_of(r, size, chunk) for r in range(size)]
    every = [p for pairs in per_rank for p in pairs]
    assert all(k <= q for q, k in every)  # nothing acausal
    assert len(every) == len(set(every)) == s * (s + 1) // 2  # the whole lower triangle, each pair once
    assert len({len(pairs) for pairs in per_rank}) == 1, [len(p) for p in per_rank]  # balanced


def test_contiguous_chunks_would_not_balance():
    """The check above can fail: with rank r holding the r-th contiguous block (no zigzag), the last rank has
    cp_size times the first rank's causal pairs."""
    size, s_cp = 4, 6
    work = [sum(min(q + 1, (r + 1) * s_cp) for q in range(r * s_cp, (r + 1) * s_cp)) for r in range(size)]
    assert work[-1] > 3 * work[0]


def test_math_kernel_matches_torch_cpu_flash_kernel():
    """The kernel used where no flash kernel takes the dtype (fp32 on CUDA) against torch's CPU flash ops: forward
    (output, log-sum-exp) and backward given an output and log-sum-exp, causal and full, GQA (4 query / 2 KV heads)."""
    from framework.attention.ring import _math_backward, _math_forward, _repeat_kv, block_backward, block_forward

    torch.manual_seed(0)
    q, dout = torch.randn(2, 4, 12, 8), torch.randn(2, 4, 12, 8)
    k, v = torch.randn(2, 2, 12, 8), torch.randn(2, 2, 12, 8)
    for causal in (True, False):
        out, lse, aux = block_forward(q, k, v, causal=causal, scale=0.5)  # CPU: torch's flash op
        assert aux[0] == "cpu"
        m_out, m_lse = _math_forward(q, _repeat_kv(k, 4), _repeat_kv(v, 4), causal=causal, scale=0.5)
        torch.testing.assert_close(m_out, out)
        torch.testing.assert_close(m_lse, lse)
        grads = block_backward(dout, q, k, v, out, lse, aux, causal=causal, scale=0.5)
        m_dq, m_dk, m_dv = _math_backward(
            dout, q, _repeat_kv(k, 4), _repeat_kv(v, 4), out, lse, causal=causal, scale=0.5
        )
        for got, want in zip(grads, (m_dq, m_dk.view(2, 2, 2, 12, 8).sum(2), m_dv.view(2, 2, 2, 12, 8).sum(2))):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sp,cp", [(2, 1), (1, 2), (2, 2), (2, 3)])
def test_adapter_shards_are_the_ring_chunks_cut_over_the_sp_ranks(sp, cp):
    """framework.data.adapter.shard_row: rank (cp c, sp j) holds the j-th sp piece of zigzag chunks c and 2cp-1-c, so
    the sp ranks of a ring rank, in order, hold exactly the positions the ring expects (`positions`), and all ranks
    together hold every position of the row once."""
    from framework.data.adapter import shard_row

    s = 2 * cp * sp * 5
    row = torch.arange(s).view(1, s)
    shards = {
        (c, j): shard_row(row, seq_rank=c * sp + j, sp_size=sp, cp_size=cp).flatten()
        for c in range(cp)
        for j in range(sp)
    }
    for c in range(cp):
        held = torch.cat([shards[(c, j)] for j in range(sp)])
        want = positions(c, cp, s // (2 * cp)) if cp > 1 else torch.arange(s)
        assert torch.equal(held, want)
    assert sorted(torch.cat(list(shards.values())).tolist()) == list(range(s))


def _packed_row(lengths):
    return torch.cat([torch.arange(n) for n in lengths])


def _document_work(lengths, size):
    """Per cp rank: the (query, key) pairs its kernel calls cover on a packed row, as row indices (small rows), and
    their count."""
    from framework.attention.ring import document_pairs, document_permutation

    perm, docs = document_permutation(_packed_row(lengths), size)
    chunk = perm.numel() // (2 * size)
    out = []
    for rank in range(size):
        pairs, count = set(), 0
        for src, qp, kp, _ in ring_steps(rank, size):
            q = _part(positions(rank, size, chunk).view(1, 1, -1), qp).flatten()
            k = _part(positions(src, size, chunk).view(1, 1, -1), kp).flatten()
            for qs, qe, ks, ke, causal in document_pairs(docs.tolist(), rank, src, size, qp, kp):
                n = qe - qs
                count += n * (n + 1) // 2 if causal else n * (ke - ks)
                if perm.numel() <= 512:
                    for i in range(qs, qe):
                        for j in range(ks, ke):
                            if not causal or j - ks <= i - qs:
                                pairs.add((perm[q[i]].item(), perm[k[j]].item()))
        out.append((pairs, count))
    return out


@pytest.mark.parametrize("size", [2, 3, 4])
def test_packed_ring_covers_each_same_document_causal_pair_once(size):
    lengths = [7, 19, 1, 13, 8, 2, 30, 16]  # 96 tokens, uneven (and shorter than 2 x size: 1, 2)
    lengths[-1] += -sum(lengths) % (2 * size)
    doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    want = {(i, j) for i in range(doc.numel()) for j in range(i + 1) if doc[i] == doc[j]}
    work = _document_work(lengths, size)
    got = [p for pairs, _ in work for p in pairs]
    assert len(got) == len(set(got)) and set(got) == want  # nothing across documents, nothing twice, nothing missed
    assert sum(c for _, c in work) == len(want)


@pytest.mark.parametrize("size", [2, 4, 8])
def test_packed_ring_gives_every_rank_the_same_work_within_10_percent(size):
    """Random uneven documents (16 to 4096 tokens) in 32K rows: the causal same-document pairs each rank computes
    differ by less than 10% (each rank holds s / cp_size tokens exactly), and on a row of one long and one short
    document, where cutting the row into zigzag chunks (as for unpacked rows) would not balance."""
    g = torch.Generator().manual_seed(size)
    for _ in range(3):
        lengths, s = [], 32768
        while sum(lengths) < s:
            lengths.append(int(torch.randint(16, 4097, (1,), generator=g)))
        lengths[-1] -= sum(lengths) - s
        counts = [c for _, c in _document_work(lengths, size)]
        assert max(counts) / min(counts) < 1.1, counts
    # one long document and a short one: balanced by the per-document cut, not by cutting the row into zigzag chunks
    # (as for unpacked rows: a token at in-document position p sees p + 1 keys)
    lengths = [24576, 8192]
    counts = [c for _, c in _document_work(lengths, size)]
    assert max(counts) / min(counts) < 1.1, counts
    pos, chunk = _packed_row(lengths), s // (2 * size)
    per_rank = [int((pos[positions(r, size, chunk)] + 1).sum()) for r in range(size)]
    assert max(per_rank) / min(per_rank) > 1.5, per_rank
