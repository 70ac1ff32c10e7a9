"""plan's config: `plan=true` (at the root of the schema) predicts instead of training; `hardware.*` says what to
predict for, so a user plans for a cluster from a laptop. Every field's 0 means: this machine's."""

from dataclasses import dataclass


@dataclass
class HardwareConfig:
    gpu_mem_gib: float = 0.0
    """Memory of one GPU, GiB (as torch reports its total). 0: this machine's first GPU; with no GPU here the plan
    assumes an 80 GB H100 (79.6 GiB) and says so."""
    host_ram_gib: float = 0.0
    """Host RAM of one node, GiB. 0: this machine's."""
    gpus_per_node: int = 0
    """GPUs (ranks) per node: the ranks whose offloaded state shares one host. 0: torchrun/SLURM's LOCAL_WORLD_SIZE,
    else all the job's ranks (one node, as the command starts them)."""
    peak_tflops: float = 0.0
    """Dense bf16 peak TFLOP/s of one GPU, for the plan's step time and the MFU each step reports. 0: this machine's
    card, from its name (989, an H100's, when there is none)."""
