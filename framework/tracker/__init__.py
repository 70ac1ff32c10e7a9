"""tracker: where step metrics go besides metrics.jsonl (the rank-0 console line with progress and ETA; W&B too with
tracker=wandb), and the FLOPs and card peaks behind TFLOP/s and MFU (framework.tracker.flops). Only rank 0 builds a
tracker."""

from framework.tracker.build import Trackers, console, wandb
from framework.tracker.config import TrackerConfig, WandbMode
from framework.tracker.console import ConsoleTracker, Progress, fmt_duration, fmt_step
from framework.tracker.metrics import JsonlWriter

__all__ = [
    "ConsoleTracker",
    "JsonlWriter",
    "Progress",
    "TrackerConfig",
    "Trackers",
    "WandbMode",
    "console",
    "fmt_duration",
    "fmt_step",
    "wandb",
]
