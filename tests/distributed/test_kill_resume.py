"""A run killed with SIGKILL at random moments (during steps and during saves), five times, each time resumed with
checkpoint.resume=latest, ends with the uninterrupted run's losses, grad norms and LRs exactly. One of the kills is of
the launcher alone: its workers die on their own, leaving `.failed.rank<N>` files that the next job must not read as
its own failure.

The uninterrupted run also shows that a stale JIT build lock does not hang a run: it starts with a killed build's
lock in its extensions folder (TORCH_EXTENSIONS_DIR, a copy of the built op, so nothing is compiled)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, assert_ok, clean_env, run_cli, run_job

pytestmark = pytest.mark.slow

STEPS = 20


def base(model_dir):
    return [
        f"model.name_or_path={model_dir}",
        f"train.max_steps={STEPS}",
        "checkpoint.every=1",
        "data.seq_length=128",
        "parallelism.sp_size=2",
    ]


def lines(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    return len(open(path).read().splitlines()) if os.path.exists(path) else 0


def group_gone(pgid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def killed_run(overrides, run_dir, rng, launcher_only):
    """Start the CLI in a process group of its own; once it has written a new step, wait a random moment (a step or
    a save is under way) and SIGKILL the whole group (or the launcher alone). False if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "framework", "+experiment=smoke_cpu", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=clean_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # metrics.jsonl holds the steps kept by this run's start (at most one fewer); the first run is killed after its
    # second step, so that step_1 is complete and resume=latest has a checkpoint
    target = max(lines(run_dir) + 1, 2)
    deadline = time.monotonic() + 240
    while proc.poll() is None and lines(run_dir) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is not None:
        assert proc.returncode == 0, f"the run failed (rc {proc.returncode}) before it could be killed"
        return False
    if launcher_only:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not group_gone(proc.pid, 30):  # its workers end on their own; whatever is left goes now
            os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    group_gone(proc.pid, 30)
    return True


def extensions_with_a_stale_lock(tmp_path):
    """A TORCH_EXTENSIONS_DIR holding the built CPU op (copied, times kept: up to date) and a lock a killed build left
    ten minutes ago."""
    import shutil

    from framework.engine.jit import OP, build_dir

    ext = tmp_path / "torch_extensions"
    built = [d for d in (build_dir(),) if os.path.exists(os.path.join(d, f"{OP}.so"))]
    folder = ext / OP
    if built:
        shutil.copytree(built[0], folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lock").write_text("")
    old = time.time() - 600
    for entry in folder.iterdir():
        os.utime(entry, (old, old))
    return str(ext), folder / "lock"


def test_run_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_losses(tmp_path, tiny_llama_dir):
    seed = int(time.time())
    rng = random.Random(seed)
    ext, lock = extensions_with_a_stale_lock(tmp_path)
    full = assert_ok(
        run_cli(base(tiny_llama_dir), str(tmp_path / "full"), env=clean_env(TORCH_EXTENSIONS_DIR=ext)), steps=STEPS
    )
    assert f"removed {lock}: a build killed before it finished left it" in full.stdout, full.stdout
    assert not lock.exists()
    run_dir = str(tmp_path / "killed")
    kills, resume = 0, []
    while kills < 5:
        if not killed_run(base(tiny_llama_dir) + resume, run_dir, rng, launcher_only=kills == 2):
            break
        kills += 1
        resume = ["checkpoint.resume=latest"]
    assert kills == 5, f"the run finished after {kills} kills (seed {seed})"
    last = assert_ok(run_job(base(tiny_llama_dir) + resume, run_dir), steps=STEPS)
    assert [m["step"] for m in last.metrics] == list(range(1, STEPS + 1))
    for a, b in zip(last.metrics, full.metrics, strict=True):
        assert (a["loss"], a["grad_norm"], a["lr"]) == (b["loss"], b["grad_norm"], b["lr"]), (seed, a["step"])
    assert not [n for n in os.listdir(run_dir) if n.startswith(".failed.rank")]
