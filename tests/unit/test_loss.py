"""The loss group: -100 masking, token-weighted aggregation over SP ranks (2 gloo processes), tiled == untiled.

Gradient convention checked here (the one DeepSpeed needs): every SP rank returns the same loss value, and the
gradient reaching a rank's tensors is that of its own share of the global loss only; DeepSpeed then *sums* the SP
ranks' parameter gradients. So rank r's hidden-state gradient equals the single-process gradient of its slice, and
the LM-head gradients of the ranks add up to the single-process one.
"""

import os

import pytest
import torch
import torch.nn.functional as F

from framework.loss import IGNORE, CausalLMLoss, LossConfig, aggregate, tiled_ce_sum

H, V = 16, 50


def make_inputs(b=2, s=21, seed=0, masked=()):
    """hidden [b, s, H] (requires grad), an LM head, shift labels with `masked` (b, s-slice) set to -100."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, s, H, generator=g, requires_grad=True)
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, H, generator=g) * 0.3)
    labels = torch.randint(0, V, (b, s), generator=g)
    for row, cols in masked:
        labels[row, cols] = IGNORE
    return hidden, head, labels


def loss_fn(tiled=False, shards=0, group=None):
    return CausalLMLoss(cfg=LossConfig(tiled=tiled, tiled_shards=shards), sp_group=group)


def test_masked_labels_do_not_count():
    hidden, head, labels = make_inputs(masked=[(0, slice(0, 5)), (1, slice(10, 21))])
    loss, n = loss_fn()(hidden, head, labels)
    valid = labels != IGNORE
    expected = F.cross_entropy(head(hidden)[valid], labels[valid])  # mean over the valid positions only
    assert int(n) == int(valid.sum()) == 2 * 21 - 5 - 11
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)


def test_all_masked_gives_zero_not_nan():
    hidden, head, labels = make_inputs(masked=[(0, slice(None)), (1, slice(None))])
    for tiled in (False, True):
        loss, n = loss_fn(tiled=tiled, shards=3)(hidden, head, labels)
        assert int(n) == 0 and loss.item() == 0.0
        loss.backward()
        assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() == 0
        hidden.grad = None


@pytest.mark.parametrize("shards", [1, 3, 7, 21])
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_tiled_equals_untiled_in_value_and_gradients(shards, scale):
    """Including a tile whose labels are all -100 and a loss scaled after the tiled sum (divided by a count, times a
    factor): DeepSpeed's TiledFusedLogitsLoss gets the LM-head gradient wrong in that case, this one must not."""
    masked = [(0, slice(0, 4)), (1, slice(6, 9)), (1, slice(18, 21))]
    results = []
    for tiled in (False, True):
        hidden, head, labels = make_inputs(masked=masked)
        if tiled:
            total = tiled_ce_sum(hidden, head, labels, shards)
        else:
            total = F.cross_entropy(head(hidden).view(-1, V), labels.view(-1), ignore_index=IGNORE, reduction="sum")
        count = (labels != IGNORE).sum()
        (total / count * scale).backward()
        results.append((total.detach(), hidden.grad, head.weight.grad))
    (v0, h0, w0), (v1, h1, w1) = results
    torch.testing.assert_close(v1, v0, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(h1, h0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w1, w0, rtol=1e-5, atol=1e-7)
    assert w0.abs().sum() > 0


# --- over an SP group of 2 gloo processes ----------------------------------------------------------------------------

AGG_CASES = {
    "uneven": ([6.0, 5.0], [3, 1]),
    "nan_on_empty_rank": ([6.0, float("nan")], [3, 0]),
    "all_empty": ([0.0, 0.0], [0, 0]),
}
SP_MASKS = {
    "uneven": [(0, slice(0, 7)), (1, slice(9, 12))],
    "rank1_empty": [(0, slice(12, 24)), (1, slice(12, 24))],  # rank 1 holds positions 12..23 of each row
}


@pytest.fixture(scope="module")
def sp_results(tmp_path_factory):
    """Every 2-rank case in one launch (starting processes is the slow part): {case: [rank0, rank1]}."""
    import torch.multiprocessing as mp

    out_dir = str(tmp_path_factory.mktemp("sp_loss"))
    mp.spawn(_entry, args=(out_dir,), nprocs=2, join=True)
    ranks = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(2)]
    return {case: [ranks[0][case], ranks[1][case]] for case in ranks[0]}


def _entry(rank, out_dir):
    import torch.distributed as dist

    # a rendezvous file, not a port: a free port picked here can be taken by another process before rank 0 binds it
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=2)
    try:
        out = {
            ("aggregate", name): _aggregate_scalars(rank, dist.group.WORLD, *case) for name, case in AGG_CASES.items()
        }
        for name in SP_MASKS:
            for tiled in (False, True):
                out[("sp_loss", name, tiled)] = _sp_loss(rank, dist.group.WORLD, name, tiled)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _aggregate_scalars(rank, group, sums, counts):
    s = torch.tensor(sums[rank], requires_grad=True)
    loss, n = aggregate(s, torch.tensor(counts[rank]), group)
    loss.backward()
    return {"loss": loss.item(), "n": int(n), "grad": s.grad.item()}


def test_uneven_counts_give_the_token_weighted_mean(sp_results):
    for r in sp_results[("aggregate", "uneven")]:
        assert r["loss"] == pytest.approx(11 / 4)  # not the mean of the ranks' means, (2 + 5) / 2
        assert r["n"] == 4
        assert r["grad"] == pytest.approx(1 / 4)  # own term only: DeepSpeed sums over the SP ranks


def test_rank_with_no_valid_token_contributes_nothing(sp_results):
    out = sp_results[("aggregate", "nan_on_empty_rank")]
    for r in out:
        assert r["loss"] == pytest.approx(2.0) and r["n"] == 3
    assert out[0]["grad"] == pytest.approx(1 / 3)
    assert out[1]["grad"] == 0.0  # finite: the NaN sum neither reaches the value nor the gradient


def test_no_valid_token_anywhere_gives_zero(sp_results):
    for r in sp_results[("aggregate", "all_empty")]:
        assert r["loss"] == 0.0 and r["n"] == 0 and r["grad"] == 0.0


def _sp_loss(rank, group, mask_name, tiled):
    hidden, head, labels = make_inputs(s=24, masked=SP_MASKS[mask_name])
    cols = slice(12 * rank, 12 * rank + 12)
    h_local = hidden.detach()[:, cols].clone().requires_grad_(True)
    loss, n = loss_fn(tiled=tiled, shards=5, group=group)(h_local, head, labels[:, cols])
    loss.backward()
    return {"loss": loss.item(), "n": int(n), "hidden_grad": h_local.grad, "head_grad": head.weight.grad}


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("mask_name", list(SP_MASKS))
def test_sp_loss_equals_the_whole_sequence_loss(mask_name, tiled, sp_results):
    hidden, head, labels = make_inputs(s=24, masked=SP_MASKS[mask_name])
    ref, n = loss_fn()(hidden, head, labels)
    ref.backward()
    out = sp_results[("sp_loss", mask_name, tiled)]
    for rank, r in enumerate(out):
        assert r["loss"] == pytest.approx(ref.item(), rel=1e-6) and r["n"] == int(n)
        torch.testing.assert_close(r["hidden_grad"], hidden.grad[:, 12 * rank : 12 * rank + 12], rtol=1e-5, atol=1e-8)
        assert torch.isfinite(r["head_grad"]).all()
    torch.testing.assert_close(out[0]["head_grad"] + out[1]["head_grad"], head.weight.grad, rtol=1e-5, atol=1e-8)


def test_liger_loss_under_zero3_registers_the_head_as_an_external_parameter():
    """Liger's fused linear CE reads the head's weight without calling the head: under ZeRO-3 the wrapper must
    register it so it is gathered. (Liger's kernels need a GPU; this covers the wrapper's ZeRO-3 side, which first
    ran on a GPU with `from deepspeed.zero import ...` and failed there.)"""
    from transformers import LlamaConfig, LlamaForCausalLM

    from framework.engine.module import CausalLMWithLoss

    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    )
    head = model.get_output_embeddings().weight
    head.ds_id = 0  # what ZeRO-3 marks its partitioned parameters with
    liger_loss = CausalLMLoss(cfg=LossConfig(tiled=True), liger=True)
    wrapped = CausalLMWithLoss(model, liger_loss)
    assert any(p is head for p in wrapped._external_params.values())
    plain = CausalLMWithLoss(model, CausalLMLoss(cfg=LossConfig(tiled=True)))
    assert not getattr(plain, "_external_params", {})
