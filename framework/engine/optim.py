"""optim: AdamW (DeepSpeed's CPU Adam when the optimizer is offloaded) and a warmup + decay LR schedule."""
from dataclasses import dataclass, field
from typing import List
import math

import torch


@dataclass
class OptimConfig:
    _target_: str = "framework.engine.optim.build_optimizer"
    lr: float = 1e-5
    """Peak learning rate."""
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: int = 0
    """Optimizer steps of linear warmup from 0 to lr."""
    schedule: str = "cosine"
    """After warmup: constant, linear or cosine decay to min_lr_ratio * lr at engine.max_steps."""
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


def build_optimizer(params, *, cfg, offload: bool, device_type: str):
    kw = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, adamw_mode=True, **kw)
    return torch.optim.AdamW(params, fused=device_type == "cuda", **kw)


def lr_lambda(step: int, *, warmup_steps: int, schedule: str, min_lr_ratio: float, max_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    decay = 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return min_lr_ratio + (1 - min_lr_ratio) * decay


def build_scheduler(optimizer, *, cfg, max_steps: int):
    from functools import partial

    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_lambda, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio,
        max_steps=max_steps))
