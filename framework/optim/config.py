"""optim's config: AdamW's hyperparameters, the LR schedule and gradient clipping."""

from dataclasses import dataclass, field
from typing import List

from framework.choice import Choice


class Schedule(Choice):
    cosine = "cosine"
    linear = "linear"
    constant = "constant"


@dataclass
class OptimConfig:
    _target_: str = "framework.optim.optimizer.build_optimizer"
    lr: float = 1e-5
    """Peak learning rate."""
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 0
    """Optimizer steps of linear warmup from 0 to lr."""
    schedule: Schedule = Schedule.cosine
    """After warmup: constant, linear or cosine decay to min_lr_ratio * lr at train.max_steps."""
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
