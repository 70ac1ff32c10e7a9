"""train's rules, checked before any worker starts (framework.validate calls them in order)."""

import torch

from framework.errors import ConfigError


def check(t, *, device: str):
    """The step counters and the device (`device`: what the job runs on, train.device unless planning for GPUs)."""
    for key in ("max_steps", "micro_batch_size", "gradient_accumulation_steps"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}", getattr(t, key), "must be at least 1", f"set train.{key}=1")
    if t.seed < 0:
        raise ConfigError("train.seed", t.seed, "must be 0 or more", "set train.seed=0")
    if t.device == "cuda" and device == t.device and not torch.cuda.is_available():
        raise ConfigError("train.device", str(t.device), "no CUDA device is visible", "set train.device=auto")
