"""parallelism's config: the parallel degrees and the names of the mesh axes."""
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from framework.choice import Choice


class MeshAxis(str, Enum):
    """Mesh axis names, outermost first. SP is innermost so an SP group is consecutive ranks (one node first)."""

    DP_REPLICATE = "dp_replicate"
    DP_SHARD = "dp_shard"
    SP = "sp"


class SPBackend(Choice):
    deepspeed = "deepspeed"


@dataclass
class ParallelismConfig:
    _target_: str = "framework.parallelism.mesh.build_mesh"
    sp_backend: SPBackend = SPBackend.deepspeed
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
