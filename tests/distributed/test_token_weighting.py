"""The loss of an optimizer step is the sum of CE over every valid token of the step divided by their count, across
gradient-accumulation micro-steps and DP replicas alike, never a mean of per-micro-batch means (which would weight a
short row's tokens more than a long row's).

Rows of 256 and 128 tokens (data.lengths; 255 and 127 valid labels): step 1 covers rows 0 and 1, either as 2
micro-steps of one SP group (gradient accumulation) or as 2 DP replicas. Both must give plain transformers' loss and
gradients of (CE sum over both rows) / 382, and must differ from the mean of the two rows' means.
"""

import pytest

from helpers import VOCAB, SEED, assert_ok as ok, max_rel_diff, reference_loss_and_grads, synthetic_row

pytestmark = pytest.mark.slow
RTOL = 1e-5


@pytest.fixture(scope="module")
def reference(tiny_llama_dir):
    per_row = [
        reference_loss_and_grads(tiny_llama_dir, synthetic_row(i, seq_length=s, vocab_size=VOCAB, seed=SEED)[None])
        for i, s in ((0, 256), (1, 128))
    ]
    counts = [255, 127]
    total = sum(counts)

    def mix(weights):
        loss = sum(w * lg[0] for w, lg in zip(weights, per_row))
        grads = {k: sum(w * lg[1][k] for w, lg in zip(weights, per_row)) for k in per_row[0][1]}
        return loss, grads

    return mix([c / total for c in counts]), mix([0.5, 0.5])


@pytest.mark.parametrize(
    "layout",
    [["train.gradient_accumulation_steps=2"], ["parallelism.dp_shard_size=2"]],
    ids=["grad_accumulation", "dp2"],
)
def test_step_loss_weights_every_valid_token_equally(cli_runs, tiny_llama_dir, reference, layout):
    (loss, grads), (mean_of_means, mom_grads) = reference
    run = ok(
        cli_runs.run(
            [
                f"model.name_or_path={tiny_llama_dir}",
                "train.max_steps=1",
                "data.lengths=[256,128]",
                "data.shuffle=false",
                "train.dump_grads=true",
                "parallelism.sp_size=2",
                *layout,
            ]
        ),
        steps=1,
    )
    assert run.metrics[0]["loss"] == pytest.approx(loss, rel=RTOL)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert max_rel_diff(run.grads(), mom_grads) > 100 * RTOL  # the test can tell the two weightings apart
