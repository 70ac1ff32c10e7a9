"""Trackers in one process: the progress line (terminal vs log file), W&B that is missing or broken, the W&B run id
kept for a resumed run, and the sweep summary read from job directories on disk."""

import io
import json
import os
import sys
import time

import pytest
from omegaconf import OmegaConf

from framework.tracker import ConsoleTracker, Progress, TrackerConfig
from framework.tracker.build import console as build_console
from framework.tracker.build import wandb as build_wandb
from framework.tracker.console import fmt_step
from framework.tracker.wandb import RUN_ID_FILE, WandbTracker
from helpers import complete_wandb_records


def step_metrics(step, **over):
    m = dict(
        step=step,
        loss=2.0,
        grad_norm=1.0,
        lr=1e-3,
        seq_length=64,
        tokens=128,
        tokens_per_s=100.0,
        tokens_per_s_per_gpu=50.0,
        tflops_per_gpu=1.0,
        mfu=0.1,
        peak_mem_gib=1.0,
        peak_reserved_gib=1.5,
        peak_mem_pct=10.0,
        host_rss_gib=2.0,
        pinned_gib=0.0,
        step_time_s=0.5,
    )
    m.update(over)
    return m


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_eta_uses_the_pace_after_the_first_step():
    now = [0.0]
    p = Progress(max_steps=10, clock=lambda: now[0])
    p.update(1, step_time_s=30.0)  # warm-up step
    assert p.eta_s() == pytest.approx(9 * 30.0)
    now[0] = 4.0
    p.update(3, step_time_s=2.0)  # 2 steps in 4 s since the first
    assert p.eta_s() == pytest.approx(7 * 2.0)


def test_console_in_a_log_file_writes_one_line_per_step_with_eta_and_no_carriage_return():
    out = FakeStream(tty=False)
    t = ConsoleTracker(stream=out)
    t.log_config({"train": {"max_steps": 3}})
    for s in (1, 2, 3):
        t.log(step_metrics(s))
    t.finish({})
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()
    assert len([x for x in lines if x]) == 3
    assert lines[0].startswith("step     1/3 |") and "| eta " in lines[0]
    for key in ("loss", "grad_norm", "lr", "seq", "tok/s/gpu", "TFLOP/s", "mfu", "mem", "host"):
        assert key in lines[0]


def test_console_in_a_terminal_redraws_one_progress_bar_in_place():
    out = FakeStream(tty=True)
    t = ConsoleTracker(stream=out)
    t.log_config({"train": {"max_steps": 4}})
    t.log(step_metrics(1))
    t.log(step_metrics(2))
    text = out.getvalue()
    assert text.count("\r\033[K") == 1  # the bar of step 1 is cleared before step 2's line
    assert "] 2/4 50% | eta " in text.rsplit("\n", 1)[-1]  # the bar is the last, unterminated line
    t.finish({})
    assert out.getvalue().endswith("\r\033[K")  # no bar left behind


def test_console_tracker_logs_nowhere_else(tmp_path):
    cfg = OmegaConf.structured(TrackerConfig())
    t = build_console(cfg=cfg, run_dir=str(tmp_path), run_config={"train": {"max_steps": 1}})
    assert isinstance(t, ConsoleTracker)
    t.log(step_metrics(1))
    t.finish({})
    assert os.listdir(tmp_path) == []


def test_missing_wandb_is_reported_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    t = WandbTracker(
        cfg=OmegaConf.structured(TrackerConfig(_target_="framework.tracker.build.wandb")), run_dir=str(tmp_path)
    )
    t.log_config({"train": {}})
    for s in (1, 2):
        t.log(step_metrics(s))
    t.finish({})
    err = capsys.readouterr().err
    assert err.count("wandb:") == 1 and "training goes on without W&B" in err


def test_broken_wandb_is_reported_once_and_training_goes_on(tmp_path, monkeypatch, capsys):
    import wandb

    def broken_init(**_kw):
        raise RuntimeError("wandb-core crashed")

    monkeypatch.setattr(wandb, "init", broken_init)
    cfg = OmegaConf.structured(TrackerConfig(_target_="framework.tracker.build.wandb"))
    t = build_wandb(cfg=cfg, run_dir=str(tmp_path), run_config={"train": {"max_steps": 2}})
    for s in (1, 2):
        t.log(step_metrics(s))
    t.finish({})
    captured = capsys.readouterr()
    assert captured.err.count("wandb:") == 1 and "wandb-core crashed" in captured.err
    assert captured.out.count("step ") == 2  # the console line goes on


def records(run_dir):
    return [
        complete_wandb_records(os.path.join(run_dir, "wandb", d))
        for d in sorted(os.listdir(os.path.join(run_dir, "wandb")))
        if d.startswith("offline-run-")
    ]


def test_offline_run_is_continued_by_a_resumed_run_with_the_same_id(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default, not the environment's doing
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    cfg = OmegaConf.structured(TrackerConfig(_target_="framework.tracker.build.wandb"))
    first = WandbTracker(cfg=cfg, run_dir=run_dir)
    first.log_config({"train": {"max_steps": 4}, "checkpoint": {"resume": None}, "data": {"seq_length": 64}})
    for s in (1, 2):
        first.log(step_metrics(s, tokens_per_s=100.0 * s, peak_mem_gib=float(s)))
    first.finish({})
    run_id = open(os.path.join(run_dir, RUN_ID_FILE)).read().strip()
    # W&B names an offline run's directory by its start second and id: two runs of one id started within the same
    # second collide (W&B 0.31 then truncates the first one's log). A real resume starts seconds later.
    time.sleep(1.1)

    again = WandbTracker(cfg=cfg, run_dir=run_dir)
    again.log_config({"train": {"max_steps": 4}, "checkpoint": {"resume": "latest"}, "data": {"seq_length": 64}})
    again.log(step_metrics(3))
    again.finish({})
    assert open(os.path.join(run_dir, RUN_ID_FILE)).read().strip() == run_id

    runs = records(run_dir)
    assert len(runs) == 2
    for recs, steps in zip(runs, ([1, 2], [3])):
        (run,) = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
        assert run.run_id == run_id
        assert [r.history.step.num for r in recs if r.WhichOneof("record_type") == "history"] == steps
    summary = {}
    for r in runs[0]:
        if r.WhichOneof("record_type") == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in r.summary.update if i.key})
    assert summary["status"] == "ok" and summary["peak_mem_gib"] == 2.0
    assert summary["tokens_per_s"] == 200.0  # the mean past the warm-up step


def test_a_new_run_in_another_directory_gets_a_new_id_unless_it_resumes_from_there(tmp_path, monkeypatch):
    from framework.tracker.wandb import previous_run_id

    old = tmp_path / "old"
    (old / "checkpoints" / "step_2").mkdir(parents=True)
    (old / RUN_ID_FILE).write_text("abc123\n")
    new = str(tmp_path / "new")
    assert previous_run_id(new, None) is None
    assert previous_run_id(new, "latest") is None
    assert previous_run_id(new, str(old / "checkpoints")) == "abc123"
    assert previous_run_id(new, str(old / "checkpoints" / "step_2")) == "abc123"


def test_summary_reads_every_job_dir_including_one_without_a_result(tmp_path):
    from framework.sweep.summary import COLUMNS, summarize

    def job(name, overrides, result=None, metrics=()):
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        if result is not None:
            (d / "result.json").write_text(json.dumps(result))
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))

    ok = dict(
        status="ok",
        steps=2,
        final_loss=5.0,
        seq_length=64,
        peak_mem_gib=1.0,
        tokens_per_s=100.0,
        tflops_per_gpu=1.0,
        mfu=0.1,
        host_rss_gib=2.0,
    )
    job(
        "0_data.seq_length=64",
        ["data.seq_length=64"],
        ok,
        [step_metrics(1, peak_mem_pct=12.0), step_metrics(2, peak_mem_pct=11.0)],
    )
    job("1_data.seq_length=128", ["data.seq_length=128"], dict(ok, status="oom", seq_length=128, error="OOM: x"))
    job("2_data.seq_length=256", ["data.seq_length=256"])
    (tmp_path / "multirun.yaml").write_text("{}\n")
    rows = summarize(str(tmp_path))
    assert [r["status"] for r in rows] == ["ok", "oom", "missing"]
    assert [r["seq_length"] for r in rows] == [64, 128, 256]
    assert rows[0]["peak_mem_pct"] == 12.0 and rows[1]["error"] == "OOM: x"
    import csv

    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == COLUMNS and len(table) == 3
    assert open(tmp_path / "summary.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_wandb_shows_the_evaluation_as_a_line_chart_a_heatmap_and_a_table(tmp_path, monkeypatch):
    from framework.eval import report

    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    cases = [
        {
            "length": n,
            "depth": 0.5,
            "answer_start": n - 4,
            "answer_ids": [1, 2],
            "predicted_ids": [1, 2],
            "correct": True,
            "answer_logprob": -0.5,
        }
        for n in (32, 64)
    ]
    jsonl = run_dir / "eval" / "passkey_step_2.jsonl"
    jsonl.write_text("".join(json.dumps(c) + "\n" for c in cases))
    report.draw(str(run_dir), step=2, history=[], passkey_path=str(jsonl))
    t = WandbTracker(
        cfg=OmegaConf.structured(TrackerConfig(_target_="framework.tracker.build.wandb", mode="offline")),
        run_dir=str(run_dir),
    )
    t.log_config({"train": {"max_steps": 2}, "checkpoint": {"resume": None}})
    t.log(
        step_metrics(
            2,
            eval_loss=1.5,
            eval_loss_by_position=[[0, 4, 2.0, 6], [4, 8, 1.0, 8], [8, 16, None, 0]],
            eval_passkey_accuracy=1.0,
        )
    )
    t.finish({})
    (recs,) = records(str(run_dir))
    keys = {
        i.key or "/".join(i.nested_key)
        for r in recs
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    # a chart, table or image is stored as its parts (eval/passkey_cases/nrows, ...; the line chart's table under
    # eval/loss_by_position_table/)
    for name in (
        "eval_loss_by_position/0-4",
        "eval_loss_by_position/4-8",
        "eval/loss_by_position_table/",
        "eval/passkey_cases/",
        "eval/passkey_heatmap/",
        "eval_passkey_accuracy",
    ):
        assert any(k.startswith(name) for k in keys), (name, sorted(keys))
    assert "eval_loss_by_position/8-16" not in keys  # an empty bucket has no loss to draw


def test_step_line_on_cpu_drops_the_gpu_memory_tflops_and_mfu_it_cannot_measure():
    line = fmt_step(step_metrics(1, device_name="cpu"), 3)
    assert "tok/s/rank" in line and "host" in line
    for key in ("TFLOP/s", "mfu", "mem ", "GiB (", "/gpu"):
        assert key not in line, line
    assert "TFLOP/s" in fmt_step(step_metrics(1, device_name="NVIDIA H200"), 3)
