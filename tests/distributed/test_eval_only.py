"""eval.only=true: one evaluation of a model directory (a run's export, or its LoRA adapter on the base), with no
optimizer, no checkpoint and no training, equals the final evaluation of the run that exported it."""

import json
import os

import pytest

from helpers import SEQ, assert_ok

pytestmark = pytest.mark.slow

EVAL = ["eval.passkey=true", "eval.passkey_lengths=[64,256]", "eval.passkey_depths=[0.5]", "eval.steps=2"]


def cases(run, step):
    with open(os.path.join(run.run_dir, "eval", f"passkey_step_{step}.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_evaluation(only, trained):
    assert only.result["steps"] == 0 and len(only.metrics) == 1 and only.metrics[0]["step"] == 0
    got, want = only.metrics[0], trained.metrics[-1]
    assert got["eval_loss"] == pytest.approx(want["eval_loss"], rel=1e-5)
    for g, w in zip(got["eval_loss_by_position"], want["eval_loss_by_position"], strict=True):
        assert g[:2] + [g[3]] == w[:2] + [w[3]] and g[2] == pytest.approx(w[2], rel=1e-5)
    assert got["eval_passkey_accuracy"] == want["eval_passkey_accuracy"]
    for g, w in zip(cases(only, 0), cases(trained, want["step"]), strict=True):
        assert g["predicted_ids"] == w["predicted_ids"] and g["answer_logprob"] == pytest.approx(
            w["answer_logprob"], rel=1e-5
        )
    for name in ("checkpoints", "model"):
        assert not os.path.exists(os.path.join(only.run_dir, name)), name
    assert os.path.exists(os.path.join(only.run_dir, "eval", "passkey_step_0.png"))
    assert "eval at step 0 | eval_loss" in only.stdout


@pytest.mark.parametrize("lora", [False, True], ids=["export", "lora_adapter"])
def test_eval_only_on_an_export_equals_the_final_evaluation_of_its_run(cli_runs, tiny_llama_dir, lora):
    sp = ["parallelism.sp_size=1"] if lora else ["parallelism.sp_size=2"]  # LoRA on one process: CPU time
    common = [f"data.seq_length={SEQ}", "data.shuffle=false"] + sp + EVAL
    common += [] if lora else ["data=long_range"]  # the learnable corpus: its rows and passkeys share a format
    extra = ["model.lora.r=4", "model.lora.alpha=8"] if lora else []
    trained = assert_ok(
        cli_runs.run(
            [
                f"model.name_or_path={tiny_llama_dir}",
                "train.max_steps=2",
                "eval.every=2",
                "optim.lr=1e-2",
                "checkpoint.every=0",
            ]
            + common
            + extra
        ),
        steps=2,
    )
    export = os.path.join(trained.run_dir, "model")
    assert os.path.exists(os.path.join(export, "adapter_config.json")) == lora
    only = cli_runs.run([f"model.name_or_path={export}", "eval.only=true"] + common)
    assert only.returncode == 0 and only.result["status"] == "ok", only.describe()
    assert_same_evaluation(only, trained)
