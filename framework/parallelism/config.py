"""parallelism's config: the parallel degrees and the names of the mesh axes."""

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from framework.choice import Choice


class MeshAxis(str, Enum):
    """Mesh axis names, outermost first. SP is innermost so an SP group is consecutive ranks (one node first): the
    Ulysses all-to-all stays inside a node, and the ring (cp), next out, goes across nodes."""

    DP_REPLICATE = "dp_replicate"
    DP_SHARD = "dp_shard"
    CP = "cp"
    SP = "sp"


def row_pieces(sp_size: int, cp_size: int) -> int:
    """The pieces one row is cut into over the ranks that share it: sp_size, or with the ring 2 x cp_size x sp_size
    (each ring rank holds 2 chunks, one from each end, for balanced causal work; each chunk cut over the sp ranks)."""
    return sp_size * (2 * cp_size if cp_size > 1 else 1)


class SPBackend(Choice):
    deepspeed = "deepspeed"


@dataclass
class ParallelismConfig:
    _target_: str = "framework.parallelism.mesh.build_mesh"
    sp_backend: SPBackend = SPBackend.deepspeed
    """Sequence-parallel backend; only DeepSpeed's Ulysses (ALST) exists."""
    sp_size: int = 1
    """Ranks that share one sequence (Ulysses all-to-all over heads). 1 disables SP."""
    cp_size: int = 1
    """Ring-attention (context-parallel) degree, outside Ulysses: cp_size x sp_size ranks share one sequence, K/V
    passed around the ring of cp_size. 1 disables the ring (as Accelerate's ParallelismConfig.cp_size)."""
    dp_shard_size: int = -1
    """Data-parallel ranks whose ZeRO state is sharded. -1: whatever the world leaves after the other axes."""
    dp_replicate_size: int = 1
    """Data-parallel replicas (another data stream each; DeepSpeed ZeRO still shards over all ranks)."""
    sp_seq_length: Optional[int] = None
    """Fixed global sequence length the SP attention expects when sp_seq_length_is_variable=false (null:
    data.seq_length)."""
    sp_seq_length_is_variable: bool = True
    """Whether the global sequence length may change between batches."""
    num_processes: int = -1
    """Processes to start on this machine when not launched by torchrun/SLURM. -1: the product of the sizes."""
