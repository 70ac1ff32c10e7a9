"""The CLI as a user runs it (a subprocess): what one run directory holds after a good run, a failing worker, a config
error and a typo."""

import json
import os
import shutil
import sys
import time

import pytest
from omegaconf import OmegaConf

from helpers import REPO, clean_env, run_cli

pytestmark = pytest.mark.slow

METRIC_FIELDS = {
    "step",
    "loss",
    "seq_length",
    "tokens",
    "tokens_per_s",
    "tflops_per_gpu",
    "mfu",
    "peak_mem_gib",
    "lr",
    "grad_norm",
    "forward_s",
    "backward_s",
    "optimizer_s",
    "host_used_gib",
    "pinned_peak_gib",
}
RESULT_FIELDS = {"status", "steps", "final_loss", "seq_length", "peak_mem_gib", "tokens_per_s", "mfu"}


def test_console_script_run_writes_config_metrics_and_result(tmp_path, tiny_llama_dir):
    script = os.path.join(os.path.dirname(sys.executable), "framework")
    assert os.path.exists(script), "the console script `framework` is not installed"
    import subprocess

    from helpers import REPO, clean_env

    run_dir = tmp_path / "job"
    p = subprocess.run(
        [
            script,
            "+experiment=smoke_cpu",
            f"model.name_or_path={tiny_llama_dir}",
            "train.max_steps=2",
            "data.seq_length=64",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert os.listdir(tmp_path) == ["job"]  # one directory for the job, none per rank
    files = set(os.listdir(run_dir))
    assert {"config.yaml", "metrics.jsonl", "result.json"} <= files, files
    assert not [f for f in files if f.startswith(".failed")], files

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert "${" not in (run_dir / "config.yaml").read_text()  # resolved
    assert cfg.model.name_or_path == tiny_llama_dir and cfg.parallelism.sp_size == 2 and cfg.train.max_steps == 2

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert METRIC_FIELDS <= set(m), METRIC_FIELDS - set(m)
        assert m["seq_length"] == 64 and m["tokens"] == 64 and m["tokens_per_s"] > 0 and m["loss"] > 0
        assert m["grad_norm"] > 0 and m["lr"] > 0
        parts = m["forward_s"] + m["backward_s"] + m["optimizer_s"]
        assert 0 < m["forward_s"] and 0 < m["backward_s"] and 0 < m["optimizer_s"]
        # the parts are the step, less the data fetch (no share asserted: step 1's first fetch took 0.12 of 0.16 s
        # once on a loaded 2-core box)
        assert parts <= m["step_time_s"], m
        assert 0 < m["host_rss_gib"] <= m["host_used_gib"]

    result = json.loads((run_dir / "result.json").read_text())
    assert RESULT_FIELDS <= set(result), RESULT_FIELDS - set(result)
    assert result["status"] == "ok" and result["steps"] == 2 and "error" not in result
    assert result["final_loss"] == pytest.approx(metrics[-1]["loss"]) and result["seq_length"] == 64
    assert f"[ok] {run_dir}" in p.stdout
    # the start-up phases, in seconds since the command started, in order; the same figures in the startup line
    phases = ["job_started_s", "validated_s", "worker_s", "model_s", "engine_s", "first_step_s"]
    startup = result["startup"]
    assert list(startup) == phases and startup["job_started_s"] == 0 < startup["validated_s"], startup
    assert all(startup[a] <= startup[b] for a, b in zip(phases, phases[1:])), startup
    assert f"first step done {startup['first_step_s']:.1f} s" in p.stdout
    # the trained model, exported (checkpoint.export defaults to true)
    assert {"config.json", "model.safetensors"} <= set(os.listdir(run_dir / "model"))


def test_failing_worker_fails_the_job_quickly_with_one_line(tmp_path, tiny_llama_dir):
    """A model directory whose config is fine (so validation passes) but whose weights file is truncated, as an
    interrupted copy leaves it: the workers fail loading it."""
    broken = tmp_path / "broken_model"
    shutil.copytree(tiny_llama_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    t0 = time.monotonic()
    run = run_cli([f"model.name_or_path={broken}", "train.max_steps=2"], str(tmp_path / "job"))
    elapsed = time.monotonic() - t0
    assert run.returncode == 1, run.describe()
    assert elapsed < 90, elapsed
    assert run.result["status"] == "failed", run.result
    assert "\n" not in run.result["error"] and "Safetensor" in run.result["error"], run.result["error"]
    assert run.result["steps"] == 0
    assert not [f for f in os.listdir(run.run_dir) if f.startswith(".failed")]
    assert run.stdout.strip().splitlines()[-1].startswith(f"[failed] {run.run_dir}: ")


OOM_WITH_A_COLLECTIVE_PENDING = """
import os, time
import multiprocessing as mp


def sleep_forever():  # a worker's helper process, like DeepSpeed's CPU Adam process under SuperOffload
    time.sleep(3600)


if os.environ.get("FRAMEWORK_OWN_LAUNCH") == "1" and os.environ.get("PIDS_DIR"):  # the ranks (and their children)
    import torch
    import torch.distributed as dist
    from framework.train import trainer

    train_step = trainer.Trainer.train_step

    def failing_step(self):
        if self.step == 1:
            child = mp.get_context("spawn").Process(target=sleep_forever, daemon=True)
            child.start()
            with open(os.path.join(os.environ["PIDS_DIR"], f"helper{self.rank}.pid"), "w") as f:
                f.write(str(child.pid))
            if self.rank == 0:  # once rank 1 has its helper: a collective that rank 1 never joins, then the OOM
                deadline = time.monotonic() + 60
                while not os.path.exists(os.path.join(os.environ["PIDS_DIR"], "helper1.pid")) \
                        and time.monotonic() < deadline:
                    time.sleep(0.1)
                dist.all_reduce(torch.ones(1), async_op=True)
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.50 GiB (simulated)")
            time.sleep(600)  # rank 1: waiting in a collective of its own
        return train_step(self)

    trainer.Trainer.train_step = failing_step
"""


def test_a_rank_out_of_memory_with_a_collective_pending_ends_the_job_and_its_processes(tmp_path):
    """Seen on 2 x H100 at 448K: rank 0 ran out of GPU memory in backward while ZeRO-3 had a collective in flight;
    tearing its process group down waited for that collective, and the job hung for 9 minutes holding both GPUs and
    the host's pinned memory (a sweep's next length then ran out of host memory). The job must end at once with the
    OOM recorded, and no process of it (not even a rank's helper process) may outlive it."""
    import psutil

    from helpers import REPO, clean_env

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(OOM_WITH_A_COLLECTIVE_PENDING)
    env = clean_env(
        PYTHONPATH=os.pathsep.join([str(site), REPO, os.environ.get("PYTHONPATH", "")]), PIDS_DIR=str(tmp_path)
    )
    t0 = time.monotonic()
    run = run_cli(["train.max_steps=3"], str(tmp_path / "job"), env=env, timeout=300)
    elapsed = time.monotonic() - t0
    assert run.returncode == 1, run.describe()
    assert run.result["status"] == "oom" and "simulated" in run.result["error"], run.result
    assert run.result["steps"] == 1 and len(run.metrics) == 1
    assert elapsed < 120, elapsed
    helpers = [int((tmp_path / f"helper{r}.pid").read_text()) for r in (0, 1)]

    alive = _left_after_10s(lambda: [q for q in map(_process, helpers) if q and _status(q) != psutil.STATUS_ZOMBIE])
    assert not alive, f"helper processes outlived the job: {alive}"
    assert not [f for f in os.listdir(run.run_dir) if f.startswith(".failed") or ".tmp" in f]


def test_config_error_exits_2_with_one_line_and_writes_nothing_half_done(tmp_path):
    run = run_cli(["parallelism.sp_size=3"], str(tmp_path / "job"))
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: parallelism.sp_size=3: "), run.stderr
    assert "Fix: " in lines[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert run.result["status"] == "failed" and run.result["error"] == lines[0], run.result
    files = set(os.listdir(run.run_dir))
    assert not {"config.yaml", "metrics.jsonl", "checkpoints"} & files, files


@pytest.mark.parametrize(
    "override,said",
    [
        (
            "parallelism.sp_sise=2",
            "parallelism.sp_sise=2: no such config key. Fix: did you mean `parallelism.sp_size`?",
        ),
        ("optim.schedule=linaer", "full_key: optim.schedule"),
    ],
)
def test_typo_key_fails_at_compose_time_naming_the_full_key(override, said, tmp_path):
    """A typo in a key (the nearest key named), or in the value of a closed choice (an Enum: Hydra lists them)."""
    run = run_cli([override], str(tmp_path / "job"))
    assert run.returncode != 0
    assert said in run.stderr and "Traceback" not in run.stdout + run.stderr, run.stderr
    assert not os.path.exists(run.run_dir)  # nothing started, nothing written


@pytest.mark.parametrize("multirun,ctrl_c", [(False, False), (True, False), (True, True)])
def test_sigterm_ends_the_job_records_it_and_starts_no_further_sweep_job(multirun, ctrl_c, tmp_path, tiny_llama_dir):
    """`timeout`, `kill` and schedulers stop a job with SIGTERM. torch's launcher turns it into an exception that the
    CLI took for the job's own failure: no result.json, Hydra's error report, and in a sweep the next job started.
    Now the job ends with one line, exit status 128 + 15, result.json says so (status failed, error "interrupted:
    stopped by SIGTERM", with the steps done), a sweep stops there, and no process of the job outlives it. Ctrl-C
    (SIGINT to the whole process group, the workers too) the same, with no worker's traceback."""
    import signal
    import subprocess

    import psutil

    from helpers import REPO, clean_env

    common = ["+experiment=smoke_cpu", f"model.name_or_path={tiny_llama_dir}", "train.max_steps=100000"]
    if multirun:
        cmd = [
            "-m",
            *common,
            "data.seq_length=64,32",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.sweep.subdir=${hydra.job.num}",
        ]
        job = None
    else:
        cmd = [*common, "data.seq_length=64", f"hydra.run.dir={tmp_path / 'job'}"]
        job = tmp_path / "job"
    p = subprocess.Popen(
        [sys.executable, "-m", "framework", *cmd],
        cwd=REPO,
        env=clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        if multirun and job is None and (tmp_path / "sweep").exists():
            jobs = sorted(d for d in (tmp_path / "sweep").iterdir() if d.is_dir() and d.name[0].isdigit())
            job = jobs[0] if jobs else None
        if job is not None and (job / "metrics.jsonl").exists() and (job / "metrics.jsonl").read_text().strip():
            break
        time.sleep(0.2)
    assert p.poll() is None, "the job ended before it could be stopped: " + p.stderr.read()[-2000:]
    assert job is not None and (job / "metrics.jsonl").exists(), "no step within 240 s"
    sig = signal.SIGINT if ctrl_c else signal.SIGTERM
    if ctrl_c:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, (p.returncode, err[-3000:])
    assert "Traceback" not in err and "Error executing job" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == f"[interrupted] {job}: stopped by {sig.name}", err[-2000:]
    result = json.loads((job / "result.json").read_text())
    steps = len((job / "metrics.jsonl").read_text().splitlines())
    assert result["status"] == "failed" and result["error"] == f"interrupted: stopped by {sig.name}", result
    assert result["steps"] == steps >= 1, (result, steps)
    if multirun:
        assert [d.name for d in (tmp_path / "sweep").iterdir() if d.is_dir() and d.name[0].isdigit()] == [job.name]
    left = _left_after_10s(
        lambda: [q for q in psutil.process_iter() if _session(q) == p.pid and _status(q) != psutil.STATUS_ZOMBIE]
    )
    assert not left, f"processes of the job outlived it: {left}"


def _left_after_10s(living) -> list:
    """The pids of the processes `living()` still lists after up to 10 s (a zombie is dead: where pid 1 does not
    reap, in some containers, it stays listed, so callers leave zombies out); they are killed, not left running."""
    deadline = time.monotonic() + 10
    while living() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = living()
    for q in left:
        q.kill()
    return [q.pid for q in left]


def _process(pid: int):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _session(proc) -> int:
    try:
        return os.getsid(proc.pid)
    except (OSError, ProcessLookupError):
        return -1


def _status(proc) -> str:
    import psutil

    try:
        return proc.status()
    except psutil.Error:
        return psutil.STATUS_ZOMBIE  # gone


def test_where_bytecode_may_not_be_written_the_command_and_its_workers_keep_it_in_its_folder(tmp_path):
    """PYTHONDONTWRITEBYTECODE set (container images do; the GPU machines of experiments/startup/ do, with a torch
    that ships no bytecode): the launcher, the forkserver and the workers write what they compile into one folder,
    and the command says so once."""
    folder = tmp_path / "pycache"
    env = clean_env(PYTHONDONTWRITEBYTECODE="1", FRAMEWORK_PYCACHE=str(folder))
    run = run_cli(["train.max_steps=1"], str(tmp_path / "run"), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count(f"compiled modules are kept in {folder}") == 1, run.stdout[:2000]
    kept = {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}
    tag = sys.implementation.cache_tag
    for module in ("framework/validate", "framework/graph"):  # the launcher's; the server's and workers' only
        assert f"{REPO.lstrip(os.sep)}/{module}.{tag}.pyc" in kept, sorted(kept)[:20]
    assert any(k.endswith(f"deepspeed/runtime/zero/stage3.{tag}.pyc") for k in kept)  # imported by the server
