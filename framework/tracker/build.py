"""The tracker of rank 0: the console line always, and a W&B run with tracker=wandb (other ranks build none)."""
from typing import Any, Dict

from framework.tracker.console import ConsoleTracker


class Trackers:
    """Several trackers as one (the console line always; W&B besides it)."""

    def __init__(self, *trackers):
        self.trackers = trackers

    def log_config(self, config: Dict[str, Any]):
        for t in self.trackers:
            t.log_config(config)

    def log(self, metrics: Dict[str, Any]):
        for t in self.trackers:
            t.log(metrics)

    def finish(self, summary: Dict[str, Any]):
        for t in self.trackers:
            t.finish(summary)


def build_tracker(*, cfg, run_dir: str, config: Dict[str, Any]):
    """The tracker of rank 0 (other ranks build none). `config` is the resolved run config."""
    tracker = ConsoleTracker(progress=cfg.get("progress", True))
    if cfg.kind == "wandb":
        from framework.tracker.wandb import WandbTracker

        tracker = Trackers(tracker, WandbTracker(cfg=cfg, run_dir=run_dir))
    tracker.log_config(config)
    return tracker
