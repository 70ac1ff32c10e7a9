"""The device mesh (dp_replicate, dp_shard, cp, sp) and the process groups taken from it."""

import torch
import torch.distributed as dist

from framework.parallelism.config import MeshAxis
from framework.builder import builds
from framework.parallelism.config import ParallelismConfig


def resolve_sizes(cfg, world_size: int) -> tuple[int, int, int, int]:
    """(dp_replicate, dp_shard, cp, sp) with dp_shard=-1 filled in from the world size."""
    dp_shard = cfg.dp_shard_size
    if dp_shard == -1:
        dp_shard = max(world_size // (cfg.dp_replicate_size * cfg.cp_size * cfg.sp_size), 1)
    return cfg.dp_replicate_size, dp_shard, cfg.cp_size, cfg.sp_size


@builds(ParallelismConfig)
def build_mesh(*, cfg, device_type: str):
    """Build the 4-D device mesh. All ranks must call this (it creates process groups)."""
    sizes = resolve_sizes(cfg, dist.get_world_size())
    return torch.distributed.device_mesh.init_device_mesh(
        device_type, sizes, mesh_dim_names=tuple(a.value for a in MeshAxis)
    )


def dp_rank_and_size(mesh) -> tuple[int, int]:
    """This rank's data-parallel coordinate over the flattened (dp_replicate, dp_shard) axes."""
    rep, shard = mesh[MeshAxis.DP_REPLICATE.value], mesh[MeshAxis.DP_SHARD.value]
    return rep.get_local_rank() * shard.size() + shard.get_local_rank(), rep.size() * shard.size()


def sequence_group(mesh) -> tuple:
    """(group, rank in it, size) of the ranks that share one sequence: the (cp, sp) ranks, cp_size x sp_size
    consecutive ranks, rank = cp_rank x sp_size + sp_rank. With cp_size 1 it is the SP group itself.

    All ranks must call this when cp_size > 1 (flattening the two axes creates a process group; torchtitan flattens
    its (dp_shard, cp) axes the same way)."""
    cp, sp = mesh[MeshAxis.CP.value], mesh[MeshAxis.SP.value]
    if cp.size() == 1:
        return sp.get_group(), sp.get_local_rank(), sp.size()
    seq = mesh[(MeshAxis.CP.value, MeshAxis.SP.value)]._flatten("cp_sp")
    return seq.get_group(), seq.get_local_rank(), seq.size()
