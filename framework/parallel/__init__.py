"""parallelism: the device mesh (dp_replicate, dp_shard, sp) and the process groups taken from it."""
from dataclasses import dataclass
from enum import Enum
from typing import Optional

import torch
import torch.distributed as dist


class MeshAxis(str, Enum):
    """Mesh axis names, outermost first. SP is innermost so an SP group is consecutive ranks (one node first)."""

    DP_REPLICATE = "dp_replicate"
    DP_SHARD = "dp_shard"
    SP = "sp"


@dataclass
class ParallelismConfig:
    _target_: str = "framework.parallel.build_mesh"
    sp_backend: str = "deepspeed"
    """Sequence-parallel backend; only DeepSpeed's Ulysses (ALST) exists."""
    sp_size: int = 1
    """Ranks that share one sequence (Ulysses all-to-all over heads). 1 disables SP."""
    dp_shard_size: int = -1
    """Data-parallel ranks whose ZeRO state is sharded. -1: whatever the world leaves after the other axes."""
    dp_replicate_size: int = 1
    """Data-parallel replicas (another data stream each; DeepSpeed ZeRO still shards over all ranks)."""
    sp_seq_length: Optional[int] = None
    """Fixed global sequence length the SP attention expects when sp_seq_length_is_variable=false (null: data.seq_length)."""
    sp_seq_length_is_variable: bool = True
    """Whether the global sequence length may change between batches."""
    num_processes: int = -1
    """Processes to start on this machine when not launched by torchrun/SLURM. -1: the product of the sizes."""


def resolve_sizes(cfg, world_size: int) -> tuple[int, int, int]:
    """(dp_replicate, dp_shard, sp) with dp_shard=-1 filled in from the world size."""
    dp_shard = cfg.dp_shard_size
    if dp_shard == -1:
        dp_shard = max(world_size // (cfg.dp_replicate_size * cfg.sp_size), 1)
    return cfg.dp_replicate_size, dp_shard, cfg.sp_size


def build_mesh(*, cfg, device_type: str):
    """Build the 3-D device mesh. All ranks must call this (it creates process groups)."""
    sizes = resolve_sizes(cfg, dist.get_world_size())
    return torch.distributed.device_mesh.init_device_mesh(
        device_type, sizes, mesh_dim_names=tuple(a.value for a in MeshAxis))


def dp_rank_and_size(mesh) -> tuple[int, int]:
    """This rank's data-parallel coordinate over the flattened (dp_replicate, dp_shard) axes."""
    rep, shard = mesh[MeshAxis.DP_REPLICATE.value], mesh[MeshAxis.DP_SHARD.value]
    return rep.get_local_rank() * shard.size() + shard.get_local_rank(), rep.size() * shard.size()
