"""parallelism's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""

import os

import torch

from framework.errors import ConfigError
from framework.parallelism.mesh import resolve_sizes
from framework.runtime import device_type


def check(p, *, world: int, device: str, count_gpus: bool = True):
    """The sizes: each at least 1, their product the number of processes, no more GPUs than this machine has
    (`count_gpus`; plan=true plans for other machines)."""
    for key in ("sp_size", "cp_size", "dp_replicate_size"):
        if getattr(p, key) < 1:
            raise ConfigError(f"parallelism.{key}", getattr(p, key), "must be at least 1", f"set parallelism.{key}=1")
    if p.dp_shard_size == 0 or p.dp_shard_size < -1:
        raise ConfigError(
            "parallelism.dp_shard_size",
            p.dp_shard_size,
            "must be at least 1, or -1 (fill the world)",
            "set parallelism.dp_shard_size=-1",
        )
    _, shard, _, _ = resolve_sizes(p, world)
    if shard < 1 or p.dp_replicate_size * shard * p.cp_size * p.sp_size != world:
        raise ConfigError(
            "parallelism.sp_size",
            p.sp_size,
            f"dp_replicate_size x dp_shard_size x cp_size x sp_size = {p.dp_replicate_size} x {p.dp_shard_size} x "
            f"{p.cp_size} x {p.sp_size} must equal the number of processes ({world})",
            f"choose sizes whose product is {world}, e.g. parallelism.sp_size={world} parallelism.cp_size=1 "
            "parallelism.dp_shard_size=1",
        )
    # with no GPU at all, the engine's rules say so (train.device=cuda); here only "too few GPUs"
    if (
        count_gpus
        and device_type(device) == "cuda"
        and torch.cuda.is_available()
        and "RANK" not in os.environ
        and world > torch.cuda.device_count()
    ):
        raise ConfigError(
            "parallelism.sp_size",
            p.sp_size,
            f"the job needs {world} GPUs and this machine has {torch.cuda.device_count()}",
            "lower the sizes, or launch on several nodes with torchrun/srun",
        )


def check_heads(p, *, text_config):
    """Ulysses splits the attention heads over the SP ranks: sp_size must divide the query heads, and divide the KV
    heads or be a multiple of them (DeepSpeed then replicates each KV head). Past the head count, the ring (cp_size)
    spreads the sequence further."""
    sp, heads = p.sp_size, text_config.num_attention_heads
    if heads % sp:
        fit = max(d for d in range(1, min(sp, heads) + 1) if heads % d == 0 and sp % d == 0)
        raise ConfigError(
            "parallelism.sp_size",
            sp,
            f"the model's {heads} query heads must be divisible by sp_size (Ulysses splits the heads)",
            f"use an sp_size that divides {heads}, and ring attention for the rest: "
            f"parallelism.sp_size={fit} parallelism.cp_size={sp // fit * p.cp_size}",
        )
    kv = text_config.num_key_value_heads
    if kv % sp and sp % kv:
        raise ConfigError(
            "parallelism.sp_size",
            sp,
            f"the model's {kv} KV heads must be divisible by sp_size, or sp_size by them",
            f"use an sp_size that divides {kv} or is a multiple of it",
        )
