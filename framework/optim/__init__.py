"""optim: AdamW (DeepSpeed's CPU Adam when the optimizer is offloaded) and a warmup + decay LR schedule."""

from framework.optim.config import OptimConfig, Schedule
from framework.optim.optimizer import build_optimizer
from framework.optim.schedule import build_scheduler, lr_lambda

__all__ = ["OptimConfig", "Schedule", "build_optimizer", "build_scheduler", "lr_lambda"]
