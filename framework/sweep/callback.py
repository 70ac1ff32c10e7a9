"""The multirun callback: the summary at the sweep root, and the exit status that tells whether every job trained.

conf/config.yaml registers `SummaryCallback` in hydra.callbacks; at the end of every multirun (any sweeper, any
launcher) it writes summary.csv and summary.png at hydra.sweep.dir, with tracker=wandb one more W&B run holding the
sweep's table and plot (framework.sweep.wandb), and prints a line per job. A sweep stopped by a signal ends without
on_multirun_end: the CLI calls `summarize_interrupted()`, which writes the same summary of the jobs that ran. A failed
or OOM job never stops the sweep (cli.app returns its record instead of raising); `exit_code()` then makes the
process end non-zero. The longest-sequence search (hydra/sweeper=max_seqlen, package
hydra_plugins.max_seqlen_sweeper) expects failures and sets its own verdict.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from framework.log import get_logger
from framework.sweep.plot import outcome
from framework.sweep.summary import COLUMNS, summarize, sweep_command
from framework.tracker.config import uses_wandb

_verdict: Optional[int] = None  # set by a sweeper that judges its own jobs (the search: failures are expected)
log = get_logger(__name__)
_exit_code = 0
_running: Optional[Tuple[str, Any]] = None  # (sweep dir, tracker config) of the multirun in progress


def set_verdict(code: int):
    """A sweeper's own judgement of the sweep, used instead of "any job failed" for the exit status."""
    global _verdict
    _verdict = code


def exit_code() -> int:
    """0 when the last multirun of this process succeeded, else non-zero (1: some job failed or left no result)."""
    return _exit_code


def write_summary(sweep_dir: str, tracker=None) -> Optional[List[Dict[str, Any]]]:
    """summary.csv and summary.png at the sweep root, the sweep's W&B run when `tracker` (a tracker config) says
    wandb, and a line per job on stdout. Returns the rows, or None when the summary could not be written."""
    try:
        rows = summarize(sweep_dir)
    except Exception as exc:  # noqa: BLE001  (a summary that cannot be drawn must not hide the jobs' results)
        log.info(f"sweep: could not write the summary in {sweep_dir}: {type(exc).__name__}: {exc}")
        return None
    where = None
    if tracker is not None and uses_wandb(tracker):
        from framework.sweep.wandb import log_sweep

        where = log_sweep(
            rows,
            COLUMNS,
            sweep_dir=sweep_dir,
            png=os.path.join(sweep_dir, "summary.png"),
            tracker=tracker,
            command=sweep_command(sweep_dir),
        )
    for r in rows:
        line = f"  [{outcome(r)}] {r['job']}"
        if r["status"] == "ok":
            line += (
                f" | seq {r['seq_length']} | peak {r['peak_mem_gib'] or 0:.2f} GiB | "
                f"{r['tokens_per_s'] or 0:,.0f} tok/s"
            )
        else:
            line += f": {r.get('error') or ''}"
        log.info(line)
    good = sum(r["status"] == "ok" for r in rows)
    log.info(
        f"sweep: {good}/{len(rows)} jobs ok; {sweep_dir}/summary.csv, summary.png"
        + (f"; W&B summary run in {where}" if where else "")
    )
    return rows


def summarize_interrupted():
    """The summary of a multirun stopped by a signal (the jobs that ran, the interrupted one marked by its
    result.json); nothing outside a multirun."""
    global _running
    if _running is not None:
        sweep_dir, tracker = _running
        _running = None
        write_summary(sweep_dir, tracker)


class SummaryCallback(Callback):
    """on_multirun_end: summary.csv + summary.png (+ the W&B summary run) at the sweep root; records the exit
    status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _verdict, _exit_code, _running
        _verdict, _exit_code = None, 0
        _running = (str(config.hydra.sweep.dir), config.get("tracker"))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_code, _running
        _running = None
        rows = write_summary(str(config.hydra.sweep.dir), config.get("tracker"))
        if rows is None:
            _exit_code = 1
        elif _verdict is not None:
            _exit_code = _verdict
        elif any(r["status"] != "ok" for r in rows):
            _exit_code = 1
