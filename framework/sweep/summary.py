"""The sweep root's summary.csv (one row per job) and summary.png (framework.sweep.plot), read back from what each
job left on disk: <job>/result.json, <job>/metrics.jsonl, <job>/.hydra/overrides.yaml and, where the planner wrote
one, <job>/plan.json. Reading from disk (not from the launcher's return values) makes it work alike for every Hydra
launcher (the basic one, and submitit's whose jobs ran on other nodes of a shared filesystem), for a sweep stopped
halfway, and for `python -m framework.sweep summarize <dir>` long after."""

import csv
import json
import os
import re
from typing import Any, Dict, List, Optional

from framework.files import atomic_write
from framework.sweep.plot import SEQ_KEY, write_plot

COLUMNS = [
    "job",
    "overrides",
    "status",
    "seq_length",
    "steps",
    "final_loss",
    "peak_mem_gib",
    "peak_reserved_gib",
    "peak_mem_pct",
    "host_rss_gib",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "tflops_per_gpu",
    "mfu",
    "step_time_s",
    "error",
    # added later, so appended: readers of older summaries keep their columns
    "host_used_gib",
    "gpu_mem_total_gib",
    "host_ram_total_gib",
    "device_name",
    "plan_gpu_peak_gib",
    "plan_host_ram_gib",
    "plan_step_time_s",
    "eval_loss",
    "eval_passkey_accuracy",
]
PLAN_KEYS = ("gpu_peak_gib", "host_ram_gib", "step_time_s")  # plan.json's predictions, drawn beside the measurements
MAX_KEYS = ("peak_mem_gib", "peak_reserved_gib", "peak_mem_pct", "host_rss_gib", "host_used_gib")


def job_dirs(sweep_dir: str) -> List[str]:
    """The job directories of a sweep (those Hydra saved overrides in, or with a result), in job-number order."""
    out = []
    for name in os.listdir(sweep_dir):
        path = os.path.join(sweep_dir, name)
        if os.path.isdir(path) and (
            os.path.exists(os.path.join(path, ".hydra", "overrides.yaml"))
            or os.path.exists(os.path.join(path, "result.json"))
        ):
            out.append(path)
    num = lambda p: int(m.group(1)) if (m := re.match(r"(\d+)", os.path.basename(p))) else 1 << 30  # noqa: E731
    return sorted(out, key=lambda p: (num(p), os.path.basename(p)))


def read_overrides(job_dir: str) -> List[str]:
    path = os.path.join(job_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def last_metrics(job_dir: str) -> Dict[str, Any]:
    """The last step of metrics.jsonl, with the memory figures as their maximum over the steps ({} if none)."""
    path = os.path.join(job_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    steps = []
    for line in open(path):
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed job
            pass
    if not steps:
        return {}
    out = dict(steps[-1])
    for k in MAX_KEYS + ("pinned_gib", "pinned_peak_gib"):
        vals = [s[k] for s in steps if s.get(k) is not None]
        if vals:
            out[k] = max(vals)
    return out


def read_job(job_dir: str) -> Dict[str, Any]:
    """One row: the job's overrides, its result.json (status `missing` when it left none) and metrics."""
    path = os.path.join(job_dir, "result.json")
    rec: Dict[str, Any] = {}
    if os.path.exists(path):
        try:
            rec = json.load(open(path))
        except json.JSONDecodeError as exc:
            rec = {"status": "missing", "error": f"unreadable result.json ({exc})"}
    else:
        rec = {"status": "missing", "error": "the job left no result.json (killed, or still running)"}
    overrides = read_overrides(job_dir)
    m = last_metrics(job_dir)
    row = {k: rec.get(k, m.get(k)) for k in COLUMNS}
    for k in MAX_KEYS:
        if m.get(k) is not None and (row[k] is None or m[k] > row[k]):
            row[k] = m[k]
    if not row["gpu_mem_total_gib"] and row["peak_mem_pct"] and row["peak_reserved_gib"]:
        # jobs older than the field: peak_mem_pct is 100 * peak reserved / the card's total
        row["gpu_mem_total_gib"] = 100 * row["peak_reserved_gib"] / row["peak_mem_pct"]
    plan = read_plan(job_dir)
    for k in PLAN_KEYS:
        row[f"plan_{k}"] = plan.get(k)
    if row["seq_length"] is None:
        seq = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == SEQ_KEY), None)
        row["seq_length"] = int(seq) if seq and seq.isdigit() else None
    row["job"], row["overrides"] = os.path.basename(job_dir), " ".join(overrides)
    row.update(last_evaluation(job_dir))
    return row


def last_evaluation(job_dir: str) -> Dict[str, Any]:
    """The job's last evaluation, for the eval panels of summary.png: `eval_loss`, `eval_passkey_accuracy`,
    `eval_loss_by_position` ([[lo, hi, loss, tokens], ...]) and `passkey_by_length` ({length: accuracy over its
    cases}, from eval/passkey_step_N.jsonl); {} when it never evaluated."""
    path = os.path.join(job_dir, "metrics.jsonl")
    last = None
    for line in open(path) if os.path.exists(path) else ():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "eval_loss" in m or "eval_passkey_accuracy" in m:
            last = m
    if last is None:
        return {}
    out = {k: last[k] for k in ("eval_loss", "eval_passkey_accuracy", "eval_loss_by_position") if k in last}
    cases = os.path.join(job_dir, "eval", f"passkey_step_{last['step']}.jsonl")
    if os.path.exists(cases):
        by: Dict[int, List[bool]] = {}
        for line in open(cases):
            try:
                c = json.loads(line)
            except json.JSONDecodeError:
                continue
            by.setdefault(c["length"], []).append(bool(c["correct"]))
        out["passkey_by_length"] = {n: sum(v) / len(v) for n, v in sorted(by.items())}
    return out


def read_plan(job_dir: str) -> Dict[str, Any]:
    """The planner's predictions for the job (<job>/plan.json: gpu_peak_gib, host_ram_gib, step_time_s), {} if none."""
    path = os.path.join(job_dir, "plan.json")
    try:
        plan = json.load(open(path))
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: plan[k] for k in PLAN_KEYS if isinstance(plan.get(k), (int, float))}


def write_csv(rows: List[Dict[str, Any]], path: str):
    with atomic_write(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})


def sweep_command(sweep_dir: str) -> Optional[str]:
    """The command that started the sweep, from the multirun.yaml Hydra saved at its root (None without one)."""
    path = os.path.join(sweep_dir, "multirun.yaml")
    if not os.path.exists(path):
        return None
    from omegaconf import OmegaConf

    overrides = OmegaConf.select(OmegaConf.load(path), "hydra.overrides", default=None)
    if overrides is None:
        return None
    hydra_args = [str(o) for o in overrides.get("hydra", []) if not str(o).startswith("hydra.mode=")]
    return " ".join(["python -m framework -m", *map(str, overrides.get("task", [])), *hydra_args])


def summarize(sweep_dir: str) -> List[Dict[str, Any]]:
    """Write <sweep_dir>/summary.csv and summary.png; return the rows."""
    rows = [read_job(d) for d in job_dirs(sweep_dir)]
    write_csv(rows, os.path.join(sweep_dir, "summary.csv"))
    write_plot(rows, os.path.join(sweep_dir, "summary.png"), sweep=sweep_dir, command=sweep_command(sweep_dir))
    return rows
