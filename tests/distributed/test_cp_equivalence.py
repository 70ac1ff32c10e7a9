"""Ulysses x ring (parallelism.cp_size) changes nothing but memory and speed, checked through the real CLI and worker
path like tests/distributed/test_sp_equivalence.py (same runs: tiny Llama with 4 query / 2 KV heads, 256-token
synthetic rows in file order, 3 steps, full step-1 gradients dumped), against plain transformers on one process and
against the 1-process trajectory (the same cached run as test_sp_equivalence's).

The gradient checks are the proof that DeepSpeed sums the cp ranks' partial gradients as it sums the SP ranks': with
ZeRO-2 (all-reduce path, sp 2 x cp 2) and ZeRO-3 (reduce-scatter path, cp 2 alone), a gradient off by cp_size
would miss the reference by 50% or more.
"""

import pytest

from helpers import (
    assert_ok as ok,
    assert_trajectories_agree,
    common_overrides as common,
    max_rel_diff,
    reference_loss_and_grads,
    rows,
    save_tiny_model,
)

RTOL = 1e-5

pytestmark = pytest.mark.slow


def test_sp2_x_cp2_matches_plain_transformers_and_one_process(cli_runs, tiny_llama_dir, ref_one, sp1):
    """4 processes: Ulysses over 2 ranks inside a ring of 2; each rank holds 64 of the 256 tokens."""
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=2", "parallelism.cp_size=2"]))
    loss, grads = ref_one
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert_trajectories_agree(run, sp1)
    assert run.metrics[0]["seq_length"] == 256 and run.metrics[0]["tokens"] == 256


def test_cp2_alone_under_zero3_matches(cli_runs, tiny_llama_dir, ref_one, sp1):
    """2 processes, ring only (no Ulysses), ZeRO-3: its reduce-scatter averages over all ranks, which the engine's
    backward scale compensates for the cp ranks as for the SP ranks."""
    run = ok(
        cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=1", "parallelism.cp_size=2", "engine.zero_stage=3"])
    )
    loss, grads = ref_one
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert_trajectories_agree(run, sp1)


def test_two_head_model_trains_on_four_ranks_with_sp2_x_cp2(cli_runs, tmp_path_factory):
    """2 query heads, 1 KV head: Ulysses alone stops at sp_size=2 (validation refuses 4 and names cp_size); with the
    ring, 4 ranks share the sequence and step 1 is plain transformers' (DeepSpeed replicates the KV head)."""
    from framework.errors import ConfigError
    from framework.validate import validate
    from helpers import compose

    model_dir = save_tiny_model(
        str(tmp_path_factory.mktemp("two_heads")), "llama", num_attention_heads=2, num_key_value_heads=1
    )
    with pytest.raises(ConfigError, match="parallelism.cp_size=2"):
        validate(compose([f"model.name_or_path={model_dir}", "parallelism.sp_size=4"]))
    run = ok(cli_runs.run(common(model_dir) + ["parallelism.sp_size=2", "parallelism.cp_size=2"]))
    loss, grads = reference_loss_and_grads(model_dir, rows(0))
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert run.losses[2] < run.losses[0]  # it trains


def test_cp2_with_every_alst_feature_matches(cli_runs, tiny_llama_dir, ref_one, sp1):
    """Tiled MLP, tiled loss, activation checkpointing (the ring's exchanges run again in the recompute) and the
    offload switch, on the ring's local tokens: step 1 still plain transformers', the trajectory the 1-process one."""
    every = [
        "model.tiled_mlp=true",
        "loss.tiled=true",
        "loss.tiled_shards=3",
        "model.activation_checkpointing=true",
        "model.offload_activations=true",
        "model.offload_keep_layers=0",
    ]  # test_alst.py's "all"
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=1", "parallelism.cp_size=2", *every]))
    loss, grads = ref_one
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert_trajectories_agree(run, sp1)
