"""tracker's config: where step metrics go besides metrics.jsonl, and how the W&B run is named and grouped."""

from dataclasses import dataclass, field
from typing import List, Optional

from framework.choice import Choice


class WandbMode(Choice):
    online = "online"
    offline = "offline"
    disabled = "disabled"
    shared = "shared"


@dataclass
class TrackerConfig:
    _target_: str = "framework.tracker.build.console"
    """The option's builder: framework.tracker.build.console (the rank-0 step line) or framework.tracker.build.wandb
    (the step line and a W&B run); conf/tracker/<option>.yaml names it. A new tracker is a YAML file and a builder."""
    project: str = "framework"
    entity: Optional[str] = None
    group: Optional[str] = None
    """W&B group; null: the sweep directory in a multirun, else none."""
    name: Optional[str] = None
    """W&B run name; null: the job's overrides (or the run directory's name)."""
    tags: List[str] = field(default_factory=list)
    mode: Optional[WandbMode] = None
    """W&B mode (offline, online, disabled); null: WANDB_MODE from the environment, else offline."""
    progress: bool = True
    """Show progress and ETA: a bar redrawn in place in a terminal, an `eta` field on each line in a log file."""


def uses_wandb(node) -> bool:
    """Whether the tracker option logs to W&B (tracker=wandb): its builder says so (`uses_wandb`), so the sweep's own
    W&B run follows the jobs' tracker without a `kind` string."""
    from framework.builder import builder_says

    return builder_says(node, "uses_wandb")
