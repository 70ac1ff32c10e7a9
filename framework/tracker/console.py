"""The rank-0 console line of every optimizer step, with progress and ETA."""

import os
import sys
import time
from typing import Any, Dict, Optional, TextIO

from framework.env import LOG_STDERR_ENV
from framework.env import TTY_ENV


def fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def fmt_step(m: Dict[str, Any], max_steps: Optional[int] = None, eta_s: Optional[float] = None) -> str:
    """The rank-0 line for one optimizer step (or for eval.only's evaluation: its eval fields only)."""
    if "loss" not in m:
        return f"eval at step {m['step']}" + "".join(
            f" | {k} {m[k]:.4f}" for k in ("eval_loss", "eval_passkey_accuracy") if k in m
        )
    step = f"{m['step']:>5}" + (f"/{max_steps}" if max_steps else "")
    on_gpu = m.get("device_name") != "cpu"  # on CPU: no GPU memory, and no peak to read TFLOP/s and MFU against
    rate = f"{m['tokens_per_s_per_gpu']:,.0f} tok/s/{'gpu' if on_gpu else 'rank'}"
    gpu = (
        f" | {m['tflops_per_gpu']:.1f} TFLOP/s | mfu {100 * m['mfu']:.1f}% | mem {m['peak_mem_gib']:.2f} GiB "
        f"({m['peak_mem_pct']:.0f}%)"
        if on_gpu
        else ""
    )
    host = f" | host {m['host_rss_gib']:.1f} GiB" + (
        f", pinned peak {m['pinned_peak_gib']:.1f} GiB, in use {m['host_used_gib']:.0f} GiB"
        if "host_used_gib" in m
        else ""
    )
    line = (
        f"step {step} | loss {m['loss']:.4f} | grad_norm {m['grad_norm']:.3f} | lr {m['lr']:.2e} | "
        f"seq {m['seq_length']} | {rate}{gpu}{host}"
        + f" | {m['step_time_s']:.2f} s"
        + (
            f" (fwd {m['forward_s']:.2f} / bwd {m['backward_s']:.2f} / opt {m['optimizer_s']:.2f})"
            if "forward_s" in m
            else ""
        )
    )
    if "eval_loss" in m:
        line += f" | eval_loss {m['eval_loss']:.4f}"
    if "eval_passkey_accuracy" in m:
        line += f" | passkey {m['eval_passkey_accuracy']:.2f}"
    if eta_s is not None:
        line += f" | eta {fmt_duration(eta_s)}"
    return line


class Progress:
    """Steps done, and the time left at the pace of the steps since the first this process ran (the first one
    carries the warm-up: allocator, kernels, communicator set-up)."""

    def __init__(self, max_steps: Optional[int] = None, clock=time.monotonic):
        self.max_steps, self.clock = max_steps, clock
        self.first: Optional[tuple[int, float]] = None  # (step, clock) at the end of the first step seen
        self.step = 0
        self.first_step_s = 0.0

    def update(self, step: int, step_time_s: float):
        self.step = step
        if self.first is None:
            self.first, self.first_step_s = (step, self.clock()), step_time_s

    def eta_s(self) -> Optional[float]:
        if not self.max_steps or self.first is None:
            return None
        left = max(self.max_steps - self.step, 0)
        done = self.step - self.first[0]
        per_step = (self.clock() - self.first[1]) / done if done > 0 else self.first_step_s
        return left * per_step

    def bar(self, width: int = 30) -> str:
        frac = min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0
        eta = self.eta_s()
        fill = int(round(frac * width))
        return f"[{'#' * fill}{'.' * (width - fill)}] {self.step}/{self.max_steps or '?'} {100 * frac:.0f}%" + (
            f" | eta {fmt_duration(eta)}" if eta is not None else ""
        )


class ConsoleTracker:
    """One line per optimizer step. In a terminal a progress bar with the ETA sits under the last line and is
    redrawn in place; in a file or pipe there is no bar and no carriage return, the line carries `eta` instead."""

    def __init__(self, stream: Optional[TextIO] = None, progress: bool = True, **_ignored):
        self.stream = stream or (sys.stderr if os.environ.get(LOG_STDERR_ENV) else sys.stdout)
        self.show_progress = progress
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        if stream is None and os.environ.get(TTY_ENV) == "1":  # the command copies the output to train.log through
            self.tty = True  # a pipe, and its own stdout is a terminal: the bar is still drawn there
        self.progress = Progress()
        self.bar_shown = False

    def log_config(self, config: Dict[str, Any]):
        self.progress.max_steps = (config.get("train") or {}).get("max_steps")

    def log(self, metrics: Dict[str, Any]):
        self.progress.update(metrics["step"], metrics.get("step_time_s", 0.0))
        eta = self.progress.eta_s() if self.show_progress and not self.tty else None
        line = fmt_step(metrics, self.progress.max_steps, eta)
        if self.tty and self.show_progress:
            clear = "\r\033[K" if self.bar_shown else ""
            self.stream.write(f"{clear}{line}\n{self.progress.bar()}")
            self.bar_shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, summary: Dict[str, Any]):
        if self.bar_shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.bar_shown = False
