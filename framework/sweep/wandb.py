"""The sweep's own W&B run (tracker=wandb): one more run in the group of the sweep's jobs, holding every job as a row
of a `wandb.Table`, summary.png as a `wandb.Image`, and one history row per finished job with `seq_length` as the
x-axis of its figures (peak memory, tokens/s, MFU, step time...), so the sweep's workspace charts them against
sequence length. Offline unless tracker.mode or WANDB_MODE say otherwise, like the jobs' runs; its files lie in
<sweep>/wandb/ beside summary.csv (`wandb sync <sweep>/wandb/offline-run-*` uploads it). A missing or broken W&B
leaves one line on stderr and the summary files as they are."""

import glob
import os
from typing import Any, Dict, List, Optional

from framework.log import get_logger
from framework.sweep.plot import series

# the figures of a job drawn against seq_length (one history row per finished job; the plan's where it wrote one)
AXIS_KEYS = (
    "peak_mem_gib",
    "peak_reserved_gib",
    "host_used_gib",
    "host_rss_gib",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "tflops_per_gpu",
    "mfu",
    "step_time_s",
    "final_loss",
    "plan_gpu_peak_gib",
    "plan_host_ram_gib",
    "plan_step_time_s",
)
RUN_NAME = "sweep summary"
log = get_logger(__name__)


def jobs_group(sweep_dir: str) -> Optional[str]:
    """The group the sweep's jobs logged their W&B runs in, read from the first job's run log (None if no job has
    one): the summary run joins it wherever this process runs from."""
    from framework.tracker.wandb import read_offline_run

    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "wandb", "*run-*", "*.wandb"))):
        try:
            for rec in read_offline_run(path):
                if rec.WhichOneof("record_type") == "run":
                    return rec.run.run_group or None
        except Exception:  # noqa: BLE001  (a log cut short: try the next job's)
            continue
    return None


def history(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per finished job, in order of length: {"seq_length": L, figure: value}. With several series (jobs that
    differ in more than their length) each figure is keyed `<figure>/<series>`."""
    groups, _ = series(rows)
    out = []
    for label, rs in groups.items():
        suffix = f"/{label}" if len(groups) > 1 else ""
        for r in sorted(rs, key=lambda r: r["seq_length"]):
            if r["status"] == "ok":
                out.append(
                    {
                        "seq_length": r["seq_length"],
                        **{k + suffix: r[k] for k in AXIS_KEYS if isinstance(r.get(k), (int, float))},
                    }
                )
    return out


def log_sweep(
    rows: List[Dict[str, Any]], columns: List[str], *, sweep_dir: str, png: str, tracker, command: Optional[str] = None
) -> Optional[str]:
    """Start, fill and finish the sweep's summary run; return its directory (None if W&B failed)."""
    try:
        import wandb

        from framework.tracker.wandb import group_name

        mode = str(tracker.get("mode") or os.environ.get("WANDB_MODE") or "offline")
        run = wandb.init(
            project=tracker.get("project") or "framework",
            entity=tracker.get("entity"),
            group=tracker.get("group") or jobs_group(sweep_dir) or group_name(sweep_dir),
            name=RUN_NAME,
            job_type="sweep_summary",
            tags=list(tracker.get("tags") or []),
            dir=sweep_dir,
            mode=mode,
            config={"command": command, "sweep_dir": os.path.abspath(sweep_dir), "jobs": len(rows)},
            settings=wandb.Settings(silent=True, init_timeout=60, console="off"),
        )  # the sweep's stdout stays as is
        where = os.path.dirname(run.dir)
        try:
            run.define_metric("seq_length")
            for k in AXIS_KEYS:
                run.define_metric(k + "*", step_metric="seq_length")  # `k` and `k/<series>`
            for h in history(rows):
                run.log(h)
            table = wandb.Table(
                columns=list(columns), allow_mixed_types=True, data=[[r.get(c) for c in columns] for r in rows]
            )
            run.log({"jobs": table, "summary": wandb.Image(png)})
        finally:
            run.finish()
        return where
    except Exception as exc:  # noqa: BLE001  (the CSV and the plot are written; W&B is the extra)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        log.warning(f"wandb: the sweep's summary run failed ({reason})")
        return None
