"""parallelism: the device mesh (dp_replicate, dp_shard, cp, sp) and the process groups taken from it."""

from framework.parallelism.config import MeshAxis, ParallelismConfig, SPBackend, row_pieces
from framework.parallelism.mesh import build_mesh, dp_rank_and_size, resolve_sizes, sequence_group

__all__ = [
    "MeshAxis",
    "ParallelismConfig",
    "SPBackend",
    "build_mesh",
    "dp_rank_and_size",
    "resolve_sizes",
    "row_pieces",
    "sequence_group",
]
