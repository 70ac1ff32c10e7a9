"""engine's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""

from framework.errors import ConfigError
from framework.runtime import device_type


def check(e, *, grad_clip: float, device: str):
    """ZeRO stage and offload combinations, and the collective timeout (`device`: what the job runs on, train.device
    unless planning for GPUs)."""
    if e.zero_stage not in (0, 1, 2, 3):
        raise ConfigError("engine.zero_stage", e.zero_stage, "must be 0, 1, 2 or 3", "set engine.zero_stage=3")
    if e.offload_params and e.zero_stage != 3:
        raise ConfigError(
            "engine.offload_params", True, "parameter offload needs ZeRO stage 3", "set engine.zero_stage=3"
        )
    if e.offload_optimizer and e.zero_stage == 0:
        raise ConfigError(
            "engine.offload_optimizer", True, "optimizer offload needs ZeRO stage 1, 2 or 3", "set engine.zero_stage=3"
        )
    if e.super_offload and not (e.offload_optimizer and e.zero_stage == 3):
        raise ConfigError(
            "engine.super_offload",
            True,
            "SuperOffload is a mode of ZeRO-3's CPU optimizer offload",
            "also set engine.offload_optimizer=true engine.zero_stage=3",
        )
    if e.super_offload and device_type(device) != "cuda":
        raise ConfigError(
            "engine.super_offload",
            True,
            "DeepSpeed's SuperOffload runs only on NVIDIA GPUs",
            "set engine.super_offload=false on this machine",
        )
    if e.super_offload and grad_clip > 0:
        raise ConfigError(
            "engine.super_offload",
            True,
            f"overlaps the CPU Adam step with backward only without "
            f"gradient clipping (optim.grad_clip={grad_clip}); with clipping DeepSpeed 0.19 "
            "steps after backward, as plain optimizer offload does",
            "set optim.grad_clip=0 to overlap, or engine.super_offload=false to keep clipping",
        )
    if e.reduce_bucket_size < 1:
        raise ConfigError(
            "engine.reduce_bucket_size",
            e.reduce_bucket_size,
            "is ZeRO's bucket of gradient elements: at least 1",
            "set engine.reduce_bucket_size=125000000 (the default)",
        )
    if e.timeout_minutes < 1:
        raise ConfigError(
            "engine.timeout_minutes", e.timeout_minutes, "must be at least 1", "set engine.timeout_minutes=1"
        )
    if not 0 < e.offload_ratio <= 1:
        raise ConfigError(
            "engine.offload_ratio",
            e.offload_ratio,
            "is the share of optimizer states stepped on the CPU: more than 0, at most 1",
            "set engine.offload_ratio=1",
        )
