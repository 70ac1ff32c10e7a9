"""engine's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""
import os

import torch

from framework.errors import ConfigError
from framework.runtime import device_type


def check(e, *, grad_clip: float, device: str = None):
    """ZeRO stage and offload combinations, the step counters, the device, and the checkpoint to resume (`device`:
    what the job runs on, engine.device unless planning for GPUs)."""
    device = e.device if device is None else device
    if e.zero_stage not in (0, 1, 2, 3):
        raise ConfigError("engine.zero_stage", e.zero_stage, "must be 0, 1, 2 or 3", "set engine.zero_stage=3")
    if e.offload_params and e.zero_stage != 3:
        raise ConfigError("engine.offload_params", True, "parameter offload needs ZeRO stage 3",
                          "set engine.zero_stage=3")
    if e.offload_optimizer and e.zero_stage == 0:
        raise ConfigError("engine.offload_optimizer", True, "optimizer offload needs ZeRO stage 1, 2 or 3",
                          "set engine.zero_stage=3")
    if e.super_offload and not (e.offload_optimizer and e.zero_stage == 3):
        raise ConfigError("engine.super_offload", True, "SuperOffload is a mode of ZeRO-3's CPU optimizer offload",
                          "also set engine.offload_optimizer=true engine.zero_stage=3")
    if e.super_offload and device_type(device) != "cuda":
        raise ConfigError("engine.super_offload", True, "DeepSpeed's SuperOffload runs only on NVIDIA GPUs",
                          "set engine.super_offload=false on this machine")
    if e.super_offload and grad_clip > 0:
        raise ConfigError("engine.super_offload", True, f"overlaps the CPU Adam step with backward only without "
                          f"gradient clipping (optim.grad_clip={grad_clip}); with clipping DeepSpeed 0.19 "
                          "steps after backward, as plain optimizer offload does",
                          "set optim.grad_clip=0 to overlap, or engine.super_offload=false to keep clipping")
    for key in ("max_steps", "micro_batch_size", "gradient_accumulation_steps"):
        if getattr(e, key) < 1:
            raise ConfigError(f"engine.{key}", getattr(e, key), "must be at least 1", f"set engine.{key}=1")
    if e.device == "cuda" and device == e.device and not torch.cuda.is_available():
        raise ConfigError("engine.device", str(e.device), "no CUDA device is visible", "set engine.device=auto")
    if e.resume not in (None, "latest") and not os.path.isdir(e.resume):
        raise ConfigError("engine.resume", e.resume, "no such checkpoint directory",
                          "give a checkpoints/ directory or checkpoints/step_N, or use engine.resume=latest")
