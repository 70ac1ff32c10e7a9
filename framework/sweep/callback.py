"""The multirun callback: the summary at the sweep root, and the exit status that tells whether every job trained.

conf/config.yaml registers `SummaryCallback` in hydra.callbacks; at the end of every multirun (any sweeper, any
launcher) it writes summary.csv and summary.png at hydra.sweep.dir and prints a line per job. A failed or OOM job
never stops the sweep (cli.app returns its record instead of raising); `exit_code()` then makes the process end
non-zero. The longest-sequence search (hydra/sweeper=max_seqlen, package hydra_plugins.max_seqlen_sweeper) expects
failures and sets its own verdict.
"""
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from framework.sweep.summary import summarize

_verdict: Optional[int] = None  # set by a sweeper that judges its own jobs (the search: failures are expected)
_exit_code = 0


def set_verdict(code: int):
    """A sweeper's own judgement of the sweep, used instead of "any job failed" for the exit status."""
    global _verdict
    _verdict = code


def exit_code() -> int:
    """0 when the last multirun of this process succeeded, else non-zero (1: some job failed or left no result)."""
    return _exit_code


class SummaryCallback(Callback):
    """on_multirun_end: summary.csv + summary.png at the sweep root; records the exit status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _verdict, _exit_code
        _verdict, _exit_code = None, 0

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _exit_code
        sweep_dir = config.hydra.sweep.dir
        try:
            rows = summarize(sweep_dir)
        except Exception as exc:  # noqa: BLE001  (a summary that cannot be drawn must not hide the jobs' results)
            print(f"sweep: could not write the summary in {sweep_dir}: {type(exc).__name__}: {exc}", flush=True)
            rows = []
            _exit_code = 1
        bad = [r for r in rows if r["status"] != "ok"]
        for r in rows:
            line = f"  [{r['status']}] {r['job']}"
            if r["status"] == "ok":
                line += (f" | seq {r['seq_length']} | peak {r['peak_mem_gib'] or 0:.2f} GiB | "
                         f"{r['tokens_per_s'] or 0:,.0f} tok/s")
            else:
                line += f": {r.get('error') or ''}"
            print(line, flush=True)
        print(f"sweep: {len(rows) - len(bad)}/{len(rows)} jobs ok; {sweep_dir}/summary.csv, summary.png", flush=True)
        if _verdict is not None:
            _exit_code = _verdict
        elif bad:
            _exit_code = 1
