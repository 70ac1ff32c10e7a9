"""A step whose loss turns NaN (injected at step 2 by a test-only hook: the loss of every rank's second training
forward is multiplied by NaN) stops the job naming the step, or with train.on_nonfinite=skip is skipped: the weights
and optimizer states saved after step 2 equal those saved after step 1, and training goes on from them."""

import glob
import os

import pytest
import torch

from helpers import REPO, assert_ok, clean_env, run_job

pytestmark = pytest.mark.slow

NAN_AT_STEP_2 = """
import os
if os.environ.get("FRAMEWORK_OWN_LAUNCH") == "1":  # the ranks
    from framework.engine import module

    forward, calls = module.CausalLMWithLoss.forward, [0]

    def nan_at_step_2(self, *args, **kw):
        loss, n = forward(self, *args, **kw)
        if self.training:
            calls[0] += 1
            if calls[0] == 2:
                loss = loss * float("nan")
        return loss, n

    module.CausalLMWithLoss.forward = nan_at_step_2
"""


@pytest.fixture(scope="module")
def nan_env(tmp_path_factory):
    """The environment of both runs: a sitecustomize that makes step 2's loss nan in every worker."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(NAN_AT_STEP_2)
    return clean_env(PYTHONPATH=os.pathsep.join([str(site), REPO, os.environ.get("PYTHONPATH", "")]))


BASE = ["train.max_steps=4", "data.seq_length=64"]


def test_nan_loss_stops_the_job_naming_the_step(tmp_path, nan_env):
    run = run_job(BASE, str(tmp_path / "job"), env=nan_env)
    assert run.returncode == 1, run.describe()
    assert run.result["status"] == "failed" and run.result["error"].startswith("FloatingPointError: step 2: loss nan")
    assert "train.on_nonfinite=skip" in run.result["error"]
    assert [m["step"] for m in run.metrics] == [1]


def tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in tensors(x)]
    return []


def optimizer_states(step_dir: str) -> list:
    """Every tensor of a ZeRO checkpoint's optimizer states, rank by rank: the fp32 weight partitions, Adam's moments
    and step counts."""
    out = []
    for path in sorted(glob.glob(os.path.join(step_dir, "*optim_states.pt"))):
        out += tensors(torch.load(path, map_location="cpu", weights_only=False)["optimizer_state_dict"])
    assert len(out) >= 4, out
    return out


def test_nan_loss_step_is_skipped_with_on_nonfinite_skip(tmp_path, nan_env):
    run = assert_ok(
        run_job(BASE + ["train.on_nonfinite=skip", "checkpoint.every=1"], str(tmp_path / "job"), env=nan_env),
        steps=4,
    )
    assert "step 2: loss nan" in run.stdout and "skipped (train.on_nonfinite=skip)" in run.stdout
    assert [m.get("skipped", False) for m in run.metrics] == [False, True, False, False]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for i, m in enumerate(run.metrics) if i != 1)
    assert run.metrics[2]["lr"] == run.metrics[1]["lr"]  # the schedule did not move at the skipped step
    ckpt = os.path.join(run.run_dir, "checkpoints")
    step1, step2, step3 = (optimizer_states(os.path.join(ckpt, f"step_{i}")) for i in (1, 2, 3))
    assert all(torch.equal(a, b) for a, b in zip(step1, step2, strict=True))  # no update at step 2
    assert not all(torch.equal(a, b) for a, b in zip(step2, step3, strict=True))  # step 3 trained
