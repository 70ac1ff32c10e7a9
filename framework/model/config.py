"""model's config: which causal LM, its dtype, and the ALST memory features applied to it."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from framework.choice import Choice, Switch


class Dtype(Choice):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@dataclass
class LoraConfig:
    r: int = 0
    """Rank of the LoRA adapter (peft) on each target module; 0: no LoRA, every weight trains."""
    alpha: float = 16.0
    """LoRA scaling numerator: the adapter's output is multiplied by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter's input, from 0 (none) to below 1."""
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    """Module names (or name suffixes) that get an adapter; ["all-linear"]: every linear layer but the LM head."""


@dataclass
class ModelConfig:
    _target_: str = "framework.model.build.build_model"
    name_or_path: Optional[str] = None
    """Local directory or hub id of a pretrained model. null: build `arch` with random weights."""
    arch: Dict[str, Any] = field(default_factory=dict)
    """Architecture fields (`model_type` plus its config's fields) used when name_or_path is null."""
    dtype: Dtype = Dtype.auto
    """Parameter dtype: auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32."""
    activation_checkpointing: bool = False
    """Non-reentrant checkpointing of every decoder layer."""
    recompute_attention: Switch = True
    """true, false or auto (the plan picks the faster that fits). With activation_checkpointing: false keeps each
    layer's attention kernel output (and its softmax statistics) so the backward does not run attention's forward again
    (selective checkpointing). Costs s x heads x head_dim x 2 B per layer on each GPU (s: the full sequence, heads: this
    rank's); saves about a fifth of attention's time."""
    keep_attention_layers: int = 0
    """With activation_checkpointing and recompute_attention=true: the last N decoder layers keep their attention
    kernel's output anyway, the others recompute it; for GPU memory that fits some layers' outputs but not all
    (each costs what recompute_attention says). 0: none; recompute_attention=false keeps it in every layer."""
    offload_activations: Switch = False
    """Offload the checkpointed hidden states to pinned CPU memory on a side stream (needs activation_checkpointing,
    GPU). true, false or auto: the plan picks the faster setup that fits (framework/plan/planner.py)."""
    offload_keep_layers: Any = "auto"
    """With offload_activations: the checkpoints of the last N decoder layers stay on the GPU (the first backward
    needs them at once). Each kept layer trades s_local x hidden x 2 B of GPU memory for the same of host RAM per
    rank. auto: the fewest (at least 1) that keep the host RAM plan under 95% of the node's RAM, printed at startup;
    so a sweep over lengths moves checkpoints to the GPUs only where the host runs out."""
    tiled_mlp: Switch = False
    """Compute each decoder MLP in sequence tiles (DeepSpeed's TiledMLP); recomputes the MLP forward in backward.
    true, false or auto: the plan picks the faster setup that fits."""
    tiled_mlp_shards: int = 0
    """Tiles per MLP call. 0: ceil(s_local / hidden_size), the max over ranks."""
    liger: bool = False
    """Apply Liger kernels (RMSNorm, RoPE, SwiGLU) where installed; with loss.tiled it supplies the fused linear CE."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA fine-tuning (model.lora.r > 0): the base weights are frozen, only the adapter trains."""
