"""Multiruns through the CLI (subprocesses): a seq-length sweep of smoke_cpu with tracker=wandb (and the sweep's own
W&B summary run read back), a sweep that goes on past a failed job, the longest-sequence search finding a planted
limit, a sweep stopped by SIGTERM in its second job that still summarises, and `python -m framework.sweep summarize`
rebuilding that summary in a copy of the sweep directory.

The planted limit is real, not simulated: tests/e2e/conf/model/tiny_gpt_bigcode.yaml has learned positions for
n_positions=96 tokens, so any longer sequence fails at its first forward (IndexError), on any machine."""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import helpers

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
BIGCODE = [
    f"hydra.searchpath=[file://{CONF}]",
    "model=tiny_gpt_bigcode",
    "parallelism.sp_size=1",
    "attention.document_masking=false",
]  # GPT-BigCode hands no position_ids to its attention
STEP_KEYS = (
    "step",
    "loss",
    "grad_norm",
    "lr",
    "seq_length",
    "tokens",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "tflops_per_gpu",
    "mfu",
    "peak_mem_gib",
    "peak_mem_pct",
    "host_rss_gib",
    "step_time_s",
)


def multirun(tmp_path, overrides, env_extra=None):
    """`python -m framework -m +experiment=smoke_cpu <overrides>`; returns (process, sweep dir, jobs by number)."""
    sweep = tmp_path / "sweep"
    env = helpers.clean_env(**(env_extra or {}))
    env.pop("WANDB_MODE", None)  # offline must be the default, not the environment's doing
    env["WANDB_CONFIG_DIR"] = str(tmp_path / "wandb_config")
    cmd = [sys.executable, "-m", "framework", "-m", "+experiment=smoke_cpu", *overrides, "hydra.sweep.dir=sweep"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    jobs = sorted(glob.glob(str(sweep / "[0-9]*")), key=lambda d: int(os.path.basename(d).split("_")[0]))
    return p, str(sweep), jobs


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def assert_png(path):
    import matplotlib.image

    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    h, w, _ = matplotlib.image.imread(path).shape
    assert h > 200 and w > 200


def wandb_records(job_dir):
    from helpers import complete_wandb_records

    (run_dir,) = glob.glob(os.path.join(job_dir, "wandb", "offline-run-*"))
    return complete_wandb_records(run_dir)


def items(update):
    return {(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in update}


def test_seq_length_sweep_records_every_job_summarises_and_groups_wandb_runs(tmp_path):
    p, sweep, jobs = multirun(tmp_path, ["train.max_steps=2", "data.seq_length=64,128", "tracker=wandb"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(jobs) == 2
    for job, seq in zip(jobs, (64, 128)):
        result = json.load(open(os.path.join(job, "result.json")))
        assert result["status"] == "ok" and result["steps"] == 2 and result["seq_length"] == seq, result
        metrics = [json.loads(x) for x in open(os.path.join(job, "metrics.jsonl"))]
        assert [m["step"] for m in metrics] == [1, 2]
        for m in metrics:
            assert set(STEP_KEYS) <= set(m), set(STEP_KEYS) - set(m)
            assert m["seq_length"] == seq and m["tokens"] == seq and m["tokens_per_s"] > 0 and m["host_rss_gib"] > 0

        # W&B: an offline run (no WANDB_MODE given) holding the history, the resolved config, the group and name
        recs = wandb_records(job)
        (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
        assert run.run_group == "sweep"
        assert f"data.seq_length={seq}" in run.display_name
        assert run.run_id == open(os.path.join(job, "wandb_run_id")).read().strip()
        config = {}
        for r in recs:
            if r.WhichOneof("record_type") == "config":
                config.update(items(r.config.update))
        config.update(items(run.config.update))
        assert config["data"]["seq_length"] == seq and config["train"]["max_steps"] == 2
        history = [items(r.history.item) for r in recs if r.WhichOneof("record_type") == "history"]
        assert [h["step"] for h in history] == [1, 2]
        assert [h["loss"] for h in history] == [m["loss"] for m in metrics]
        assert all(set(STEP_KEYS) <= set(h) for h in history)
        summary = {}
        for r in recs:
            if r.WhichOneof("record_type") == "summary":
                summary.update(items(r.summary.update))
        assert summary["status"] == "ok" and summary["seq_length"] == seq
        assert summary["final_loss"] == metrics[-1]["loss"]

    rows = read_csv(os.path.join(sweep, "summary.csv"))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [int(r["seq_length"]) for r in rows] == [64, 128]
    for col in ("overrides", "peak_mem_gib", "tokens_per_s", "tflops_per_gpu", "mfu", "host_rss_gib"):
        assert all(r[col] != "" for r in rows), col
    assert "data.seq_length=64" in rows[0]["overrides"]
    # what the plot reads memory against: no card on CPU, the node's RAM
    assert all(r["device_name"] == "cpu" and float(r["gpu_mem_total_gib"]) == 0 for r in rows)
    assert all(float(r["host_ram_total_gib"]) >= float(r["host_used_gib"]) > 0 for r in rows)
    assert_png(os.path.join(sweep, "summary.png"))

    # the sweep's own W&B run, beside summary.csv, in the jobs' group: the table (one row per job, as the CSV), the
    # plot, and each job's figures against seq_length
    (summary_run,) = glob.glob(os.path.join(sweep, "wandb", "offline-run-*"))
    recs = helpers.complete_wandb_records(summary_run)
    (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    assert run.run_group == "sweep" and run.display_name == "sweep summary"
    history = [items(r.history.item) for r in recs if r.WhichOneof("record_type") == "history"]
    (logged,) = [h for h in history if "jobs.path" in h]  # a table or image is logged as a file: its fields nested
    assert logged["jobs._type"] == "table-file" and logged["summary._type"] == "image-file"
    table = json.load(open(os.path.join(summary_run, "files", logged["jobs.path"])))
    assert len(table["data"]) == len(rows) == 2
    as_dicts = [dict(zip(table["columns"], d)) for d in table["data"]]
    assert [(t["job"], t["status"], t["seq_length"]) for t in as_dicts] == [
        (r["job"], r["status"], int(r["seq_length"])) for r in rows
    ]
    assert [t["tokens_per_s"] for t in as_dicts] == [float(r["tokens_per_s"]) for r in rows]
    assert os.path.getsize(os.path.join(summary_run, "files", logged["summary.path"])) == os.path.getsize(
        os.path.join(sweep, "summary.png")
    )
    by_length = [h for h in history if "seq_length" in h]
    assert [(h["seq_length"], h["peak_mem_gib"]) for h in by_length] == [
        (int(r["seq_length"]), float(r["peak_mem_gib"])) for r in rows
    ]
    defined = {r.metric.glob_name: r.metric.step_metric for r in recs if r.WhichOneof("record_type") == "metric"}
    assert defined["tokens_per_s_per_gpu*"] == defined["peak_mem_gib*"] == "seq_length"


def test_sweep_goes_on_after_a_failed_job_records_it_and_exits_nonzero(tmp_path):
    # job 0 (128 tokens > n_positions=96) fails first; job 1 must still run
    p, sweep, jobs = multirun(tmp_path, BIGCODE + ["train.max_steps=2", "data.seq_length=128,64"])
    assert p.returncode != 0, p.stdout[-2000:]
    assert len(jobs) == 2
    failed = json.load(open(os.path.join(jobs[0], "result.json")))
    assert failed["status"] == "failed" and failed["seq_length"] == 128
    assert failed["error"].startswith("IndexError: index out of range")
    ok = json.load(open(os.path.join(jobs[1], "result.json")))
    assert ok["status"] == "ok" and ok["steps"] == 2, ok
    rows = read_csv(os.path.join(sweep, "summary.csv"))
    assert [(r["status"], r["seq_length"]) for r in rows] == [("failed", "128"), ("ok", "64")]
    assert rows[0]["error"].startswith("IndexError")
    assert_png(os.path.join(sweep, "summary.png"))
    # tracker=console logs nowhere else; in a log file the progress is an `eta` field, never a redrawn bar
    assert not any(os.path.exists(os.path.join(j, "wandb")) for j in jobs)
    assert "step     2/2 |" in p.stdout and "| eta " in p.stdout and "\r" not in p.stdout


def test_max_seqlen_search_finds_the_planted_limit(tmp_path):
    p, sweep, jobs = multirun(
        tmp_path,
        BIGCODE
        + [
            "hydra/sweeper=max_seqlen",
            "hydra.sweeper.start=32",
            "hydra.sweeper.granularity=32",
            "hydra.sweeper.steps=1",
        ],
    )
    assert p.returncode == 0, p.stderr[-3000:]
    answer = json.load(open(os.path.join(sweep, "max_seqlen.json")))
    assert answer["device"] == "cpu" and "hydra/sweeper=max_seqlen" in answer["command"] and answer["date"]
    (search,) = answer["searches"]
    # grows 32 -> 64 -> 128 (fails), then bisects to 96 = n_positions
    assert [(x["seq_length"], x["status"]) for x in search["probes"]] == [
        (32, "ok"),
        (64, "ok"),
        (128, "failed"),
        (96, "ok"),
    ]
    assert search["max_seq_length"] == 96 and not search["reached_max"]
    assert search["first_failure"]["seq_length"] == 128
    assert search["first_failure"]["error"].startswith("IndexError")
    good = search["last_good"]
    assert good["seq_length"] == 96 and good["host_rss_gib"] > 0 and good["tokens_per_s"] > 0
    for key in ("peak_mem_gib", "peak_reserved_gib", "peak_mem_pct"):
        assert good[key] is not None
    assert "data.seq_length=96 trains" in p.stdout
    # each probe is a job of its own (a fresh launch) that trained hydra.sweeper.steps steps
    assert len(jobs) == 4
    for job, probe in zip(jobs, search["probes"]):
        assert json.load(open(os.path.join(job, "result.json")))["status"] == probe["status"]
    assert json.load(open(os.path.join(jobs[3], "result.json")))["steps"] == 1
    assert len(read_csv(os.path.join(sweep, "summary.csv"))) == 4


def test_submitit_launcher_sweep_records_a_failure_and_search_finds_the_limit(tmp_path):
    """hydra/launcher=submitit_local (submitit's stand-in for submitit_slurm: each job a separate submitit process, its
    result pickled back): the failed job is recorded, the summary written, the exit status non-zero; the search finds
    the planted limit from what its jobs left on disk."""
    submitit = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    (tmp_path / "sweep").mkdir()
    (tmp_path / "search").mkdir()
    p, sweep, jobs = multirun(tmp_path / "sweep", BIGCODE + submitit + ["train.max_steps=2", "data.seq_length=128,64"])
    assert p.returncode != 0, p.stdout[-2000:]
    rows = read_csv(os.path.join(sweep, "summary.csv"))
    assert [(r["status"], r["seq_length"], r["steps"]) for r in rows] == [("failed", "128", "0"), ("ok", "64", "2")]
    assert rows[0]["error"].startswith("IndexError")
    assert_png(os.path.join(sweep, "summary.png"))
    assert os.path.isdir(os.path.join(sweep, ".submitit"))  # it really went through submitit

    p, sweep, jobs = multirun(
        tmp_path / "search",
        BIGCODE
        + submitit
        + [
            "hydra/sweeper=max_seqlen",
            "hydra.sweeper.start=64",
            "hydra.sweeper.granularity=32",
            "hydra.sweeper.steps=1",
        ],
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (search,) = json.load(open(os.path.join(sweep, "max_seqlen.json")))["searches"]
    assert [(x["seq_length"], x["status"]) for x in search["probes"]] == [(64, "ok"), (128, "failed"), (96, "ok")]
    assert search["max_seq_length"] == 96


@pytest.fixture(scope="module")
def interrupted_sweep(tmp_path_factory):
    """A sweep stopped by SIGTERM in its second job: job 0 trains its 2 steps, job 1 (100000 steps) is stopped once
    it has logged a step. Returns (process, stdout, stderr, sweep dir)."""
    tmp = tmp_path_factory.mktemp("interrupted")
    sweep = tmp / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "framework",
        "-m",
        "+experiment=smoke_cpu",
        "data.seq_length=32",
        "train.max_steps=2,100000",
        "hydra.sweep.dir=sweep",
    ]
    p = subprocess.Popen(
        cmd,
        cwd=tmp,
        env=helpers.clean_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    second = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        jobs = sorted(sweep.glob("1_*")) if sweep.exists() else []
        second = jobs[0] if jobs else None
        if second is not None and (second / "metrics.jsonl").exists() and (second / "metrics.jsonl").read_text():
            break
        time.sleep(0.2)
    assert p.poll() is None, "the sweep ended before it could be stopped: " + p.stderr.read()[-2000:]
    assert second is not None, "job 1 logged no step within 240 s"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=180)
    return p, out, err, sweep


def test_sweep_stopped_by_sigterm_summarises_the_jobs_that_ran_and_marks_the_interrupted_one(interrupted_sweep):
    p, out, err, sweep = interrupted_sweep
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, err[-3000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("stopped by SIGTERM"), err[-2000:]
    rows = read_csv(os.path.join(sweep, "summary.csv"))
    assert [(r["job"].split("_")[0], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed")]
    assert rows[0]["steps"] == "2" and float(rows[0]["tokens_per_s"]) > 0
    assert rows[1]["error"] == "interrupted: stopped by SIGTERM" and int(rows[1]["steps"]) >= 1
    assert_png(os.path.join(sweep, "summary.png"))
    assert f"[interrupted] {rows[1]['job']}: interrupted: stopped by SIGTERM" in out
    assert "sweep: 1/2 jobs ok" in out


def test_summarize_command_rebuilds_the_summary_of_a_copied_sweep_dir(interrupted_sweep, tmp_path):
    _, _, _, sweep = interrupted_sweep
    copy = tmp_path / "elsewhere"
    shutil.copytree(sweep, copy)
    for name in ("summary.csv", "summary.png"):
        (copy / name).unlink()
    p = subprocess.run(
        [sys.executable, "-m", "framework.sweep", "summarize", str(copy)],
        cwd=tmp_path,
        env=helpers.clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_csv(os.path.join(copy, "summary.csv")) == read_csv(os.path.join(sweep, "summary.csv"))
    assert_png(os.path.join(copy, "summary.png"))
    assert "sweep: 1/2 jobs ok" in p.stdout and not (copy / "wandb").exists()  # tracker=console: no W&B run
