"""The tracker of rank 0: the console line always, and a W&B run with tracker=wandb (other ranks build none)."""

from typing import Any, Dict

from framework.builder import builds
from framework.tracker.config import TrackerConfig
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


@builds(TrackerConfig)
def console(*, cfg, run_dir: str, run_config: Dict[str, Any]):
    """tracker=console: the rank-0 step line (built on rank 0 only). `run_config` is the resolved run config."""
    tracker = ConsoleTracker(progress=cfg.get("progress", True))
    tracker.log_config(run_config)
    return tracker


@builds(TrackerConfig)
def wandb(*, cfg, run_dir: str, run_config: Dict[str, Any]):
    """tracker=wandb: the step line and a W&B run (offline unless the environment says otherwise)."""
    from framework.tracker.wandb import WandbTracker

    tracker = Trackers(ConsoleTracker(progress=cfg.get("progress", True)), WandbTracker(cfg=cfg, run_dir=run_dir))
    tracker.log_config(run_config)
    return tracker


console.uses_wandb, wandb.uses_wandb = False, True  # framework.tracker.config.uses_wandb
