"""eval.every: held-out rows scored with SP on (sharded like training), without disturbing training.

Runs with optim.lr=0, so the weights stay those saved and the eval loss has an exact reference: plain transformers
on the held-out synthetic rows (train.seed + 1, in order; eval_steps=2 micro-batches of one row each).
"""

import pytest

from helpers import SEQ, VOCAB, SEED, assert_ok, reference_loss_and_grads, synthetic_row

pytestmark = pytest.mark.slow


def test_eval_scores_held_out_rows_under_sp_and_leaves_training_alone(cli_runs, tiny_llama_dir):
    import torch

    base = [
        f"model.name_or_path={tiny_llama_dir}",
        "train.max_steps=2",
        f"data.seq_length={SEQ}",
        "data.shuffle=false",
        "optim.lr=0",
    ]
    plain = assert_ok(cli_runs.run(base + ["parallelism.sp_size=2"]), steps=2)
    with_eval = {
        sp: assert_ok(cli_runs.run(base + [f"parallelism.sp_size={sp}", "eval.every=1", "eval.steps=2"]), steps=2)
        for sp in (1, 2)
    }
    with_eval["cp2"] = assert_ok(
        cli_runs.run(base + ["parallelism.sp_size=1", "parallelism.cp_size=2", "eval.every=1", "eval.steps=2"]), steps=2
    )
    held_out = torch.stack([synthetic_row(i, seq_length=SEQ, vocab_size=VOCAB, seed=SEED + 1) for i in (0, 1)])
    ref, _ = reference_loss_and_grads(tiny_llama_dir, held_out)
    for sp, run in with_eval.items():
        assert [m["eval_loss"] for m in run.metrics] == pytest.approx([ref, ref], rel=1e-5), (sp, run.metrics)
        assert f"eval_loss {ref:.4f}" in run.stdout  # the rank-0 step line shows it
    # evaluating consumed no training row: the training losses are those of the run without eval
    assert [m["loss"] for m in with_eval[2].metrics] == [m["loss"] for m in plain.metrics]
    assert [m["loss"] for m in with_eval["cp2"].metrics] == pytest.approx([m["loss"] for m in plain.metrics], rel=1e-5)
    assert "eval_loss" not in plain.metrics[0]
    # and the held-out rows are not training rows
    assert abs(plain.metrics[0]["loss"] - ref) > 1e-4
