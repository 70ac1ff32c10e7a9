"""SP changes nothing but memory and speed (an invariant: README, "Correctness rules the tests hold"), checked through
the real CLI and worker path.

Every run: tiny Llama (4 query / 2 KV heads) loaded from the same directory, synthetic rows of 256 tokens in file
order (data.shuffle=false, so optimizer step k of one DP replica processes row k-1), 3 steps, and
train.dump_grads=true so the full step-1 gradients come back. The reference is plain transformers (fp32, sdpa) on
one process. Tolerances are float32 rounding: observed differences are about 2e-7 (loss) and 4e-7 (gradients).
"""

import pytest

from helpers import (
    assert_ok as ok,
    assert_trajectories_agree,
    common_overrides as common,
    max_rel_diff,
    reference_loss_and_grads,
    rows,
)

RTOL = 1e-5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sp2(cli_runs, tiny_llama_dir):
    return ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=2"]))


def test_sp1_step1_matches_plain_transformers(sp1, ref_one):
    loss, grads = ref_one
    assert sp1.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(sp1.grads(), grads) < RTOL


def test_sp2_step1_loss_and_grads_match_plain_transformers(sp2, ref_one):
    loss, grads = ref_one
    assert sp2.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(sp2.grads(), grads) < RTOL


def test_sp1_and_sp2_trajectories_agree(sp1, sp2):
    assert_trajectories_agree(sp2, sp1)
    assert sp2.losses[0] != sp2.losses[2]  # training moved: the comparison is not of three copies of one number


def test_sp4_replicates_kv_heads_and_matches(cli_runs, tiny_llama_dir, sp1, ref_one):
    """sp_size=4 > 2 KV heads: DeepSpeed replicates each KV head over 2 ranks."""
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=4"]))
    loss, grads = ref_one
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert_trajectories_agree(run, sp1)


def test_dp2_x_sp2_equals_a_two_sample_batch(cli_runs, tiny_llama_dir):
    """4 processes: 2 DP replicas x 2 SP ranks. StepSampler: at micro-step 0 replica d reads row d, so step 1 is the
    2-row batch (rows 0, 1); both rows have the same valid-token count, so the token-weighted loss is their mean."""
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=2", "parallelism.dp_shard_size=2"]))
    loss, grads = reference_loss_and_grads(tiny_llama_dir, rows(0, 1))
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    one_row_loss = reference_loss_and_grads(tiny_llama_dir, rows(0))[0]
    assert abs(run.losses[0] - one_row_loss) > 10 * RTOL * one_row_loss  # the test can tell 1 row from 2 (7e-4)


def test_zero3_sp2_matches(cli_runs, tiny_llama_dir, sp1, ref_one):
    """ZeRO-3 runs on CPU; its reduce-scatter averages over sp x dp ranks, which the engine compensates."""
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=2", "engine.zero_stage=3"]))
    loss, grads = ref_one
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert_trajectories_agree(run, sp1)


def test_gradient_accumulation_equals_a_two_sample_batch(cli_runs, tiny_llama_dir):
    """sp_size=2 with 2 micro-steps per optimizer step: step 1 accumulates rows 0 and 1 (StepSampler order), which
    must give the gradient and loss of the 2-row batch on one process."""
    run = ok(cli_runs.run(common(tiny_llama_dir) + ["parallelism.sp_size=2", "train.gradient_accumulation_steps=2"]))
    loss, grads = reference_loss_and_grads(tiny_llama_dir, rows(0, 1))
    assert run.losses[0] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert run.metrics[0]["tokens"] == 2 * 256
