"""engine's config: the DeepSpeed ZeRO engine only (stage, offloads, SuperOffload, buckets, the Ulysses all-to-all's
dtype, the collective timeout, raw DeepSpeed overrides). The step loop is `train`, checkpoints `checkpoint`,
evaluation `eval`."""

from dataclasses import dataclass, field
from typing import Any, Dict

from framework.choice import Choice


class CommDtype(Choice):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@dataclass
class EngineConfig:
    _target_: str = "framework.engine.build.build_engine"
    zero_stage: int = 3
    """DeepSpeed ZeRO stage: 0, 1, 2 or 3."""
    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory and step there (DeepSpeed CPU Adam)."""
    offload_params: bool = False
    """Keep parameters in CPU memory (ZeRO-3 only)."""
    offload_ratio: float = 1.0
    """ZeRO-3 only: share of the optimizer states stepped on the CPU (the rest stays on the GPU). 1: all."""
    super_offload: bool = False
    """ZeRO-3 + offload_optimizer, on NVIDIA GPUs: DeepSpeed's SuperOffload, which steps each parameter group on the
    CPU as soon as its gradients arrive, overlapped with the rest of backward. Needs optim.grad_clip=0: with clipping
    DeepSpeed 0.19 waits for the global norm and steps after backward (the config refuses the pair)."""
    timeout_minutes: int = 30
    """Minutes a collective (and the start, while rank 0 validates and tokenizes) may wait before the job fails."""
    reduce_bucket_size: int = 125_000_000
    """ZeRO reduce / prefetch bucket elements: 1.25e8 adds about 1 GB at fp32, 5e8 about 4 GB."""
    sp_comm_dtype: CommDtype = CommDtype.auto
    """dtype of the Ulysses all-to-all (auto: the model's dtype)."""
    deepspeed: Dict[str, Any] = field(default_factory=dict)
    """Raw DeepSpeed config merged over the generated one (expert escape hatch). The generated one sets, under ZeRO-3,
    stage3_max_reuse_distance to two of the model's largest decoder layers (framework/engine/build.py:reuse_distance)
    and gathers each decoder layer whole (every layer a ZeRO-3 leaf module, gather_layers_whole); a
    stage3_max_reuse_distance or zero_optimization.leaf_module given here wins (`leaf_module: {classes: []}`:
    DeepSpeed's per-submodule hooks)."""
