"""tracker: where step metrics go besides metrics.jsonl (console line on rank 0; W&B with tracker=wandb)."""
from dataclasses import dataclass, field
import json
import os
import sys
from typing import Any, Dict, List, Optional


@dataclass
class TrackerConfig:
    _target_: str = "framework.track.build_tracker"
    kind: str = "console"
    """console (the rank-0 log line only) or wandb."""
    project: str = "framework"
    entity: Optional[str] = None
    group: Optional[str] = None
    """W&B group; null: the sweep directory's name in a multirun, else none."""
    name: Optional[str] = None
    """W&B run name; null: the job's overrides (or the run directory's name)."""
    tags: List[str] = field(default_factory=list)
    mode: Optional[str] = None
    """W&B mode: null means WANDB_MODE from the environment, else offline."""


def fmt_step(m: Dict[str, Any]) -> str:
    """The rank-0 line for one optimizer step."""
    return (f"step {m['step']:>5} | loss {m['loss']:.4f} | grad_norm {m['grad_norm']:.3f} | lr {m['lr']:.2e} | "
            f"seq {m['seq_length']} | {m['tokens_per_s_per_gpu']:,.0f} tok/s/gpu | {m['tflops_per_gpu']:.1f} TFLOP/s "
            f"| mfu {100 * m['mfu']:.1f}% | mem {m['peak_mem_gib']:.2f} GiB ({m['peak_mem_pct']:.0f}%) "
            f"| host {m['host_rss_gib']:.1f} GiB | {m['step_time_s']:.2f} s")


class ConsoleTracker:
    def __init__(self, **_ignored):
        pass

    def log_config(self, config: Dict[str, Any]):
        pass

    def log(self, metrics: Dict[str, Any]):
        print(fmt_step(metrics), file=sys.stderr if os.environ.get("FRAMEWORK_LOG_STDERR") else sys.stdout,
              flush=True)

    def finish(self, summary: Dict[str, Any]):
        pass


def build_tracker(*, cfg, run_dir: str, config: Dict[str, Any]):
    """The tracker of rank 0 (other ranks build none). `config` is the resolved run config."""
    if cfg.kind == "wandb":
        from framework.track.wandb import WandbTracker

        tracker = WandbTracker(cfg=cfg, run_dir=run_dir)
    else:
        tracker = ConsoleTracker()
    tracker.log_config(config)
    return tracker


class JsonlWriter:
    """Appends one JSON object per line and flushes, so a killed job keeps every finished step."""

    def __init__(self, path: str):
        self.f = open(path, "a")

    def write(self, obj: Dict[str, Any]):
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()

    def close(self):
        self.f.close()
