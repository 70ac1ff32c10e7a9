"""The LR schedule: linear warmup, then constant, linear or cosine decay to min_lr_ratio x lr at train.max_steps."""

import math

import torch


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

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(
            lr_lambda,
            warmup_steps=cfg.warmup_steps,
            schedule=str(cfg.schedule),
            min_lr_ratio=cfg.min_lr_ratio,
            max_steps=max_steps,
        ),
    )
