"""checkpoint.save_on_interrupt: SIGTERM (what `timeout`, `kill` and schedulers send before the kill) lets the running
step finish, saves a complete checkpoint of it, and stops the job as an interrupted one; resume=latest then continues
exactly where the uninterrupted run went."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from framework.checkpoint import incomplete_reason
from helpers import REPO, assert_ok, clean_env, run_job

pytestmark = pytest.mark.slow

STEPS = 200  # long enough that the job is still running when the signal comes


def test_sigterm_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, tiny_llama_dir):
    base = [
        "+experiment=smoke_cpu",
        f"model.name_or_path={tiny_llama_dir}",
        f"train.max_steps={STEPS}",
        "data.seq_length=64",
    ]
    job = tmp_path / "job"
    p = subprocess.Popen(
        [sys.executable, "-m", "framework", *base, "checkpoint.save_on_interrupt=true", f"hydra.run.dir={job}"],
        cwd=REPO,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        if (job / "metrics.jsonl").exists() and len((job / "metrics.jsonl").read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert p.poll() is None, "the job ended before it could be stopped: " + p.stderr.read()[-2000:]
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    done = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= len(done) < STEPS
    saved = sorted(d for d in os.listdir(job / "checkpoints") if d.startswith("step_"))
    assert saved == [f"step_{len(done)}"], saved  # the last step finished was saved, and nothing else
    assert incomplete_reason(str(job / "checkpoints" / f"step_{len(done)}")) is None
    assert json.loads((job / "result.json").read_text())["error"] == "interrupted: stopped by SIGTERM"

    resumed = assert_ok(run_job(base[1:] + ["checkpoint.resume=latest"], str(job), timeout=300), steps=STEPS)
    full = assert_ok(run_job(base[1:], str(tmp_path / "full"), timeout=300), steps=STEPS)
    for a, b in zip(resumed.metrics, full.metrics, strict=True):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-6), (a, b)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
