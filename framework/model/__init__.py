"""model: a Hugging Face causal LM, from a local directory / hub id or from architecture fields with random weights."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch


@dataclass
class ModelConfig:
    _target_: str = "framework.model.build_model"
    name_or_path: Optional[str] = None
    """Local directory or hub id of a pretrained model. null: build `arch` with random weights."""
    arch: Dict[str, Any] = field(default_factory=dict)
    """Architecture fields (`model_type` plus its config's fields) used when name_or_path is null."""
    dtype: str = "auto"
    """Parameter dtype: auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32."""
    activation_checkpointing: bool = False
    """Non-reentrant checkpointing of every decoder layer."""
    recompute_attention: bool = True
    """With activation_checkpointing: false keeps each layer's attention kernel output (and its softmax statistics)
    so the backward does not run attention's forward again (selective checkpointing). Costs s x heads x head_dim x
    2 B per layer on each GPU (s: the full sequence, heads: this rank's); saves about a fifth of attention's time."""
    keep_attention_layers: int = 0
    """With activation_checkpointing and recompute_attention=true: the last N decoder layers keep their attention
    kernel's output anyway, the others recompute it; for GPU memory that fits some layers' outputs but not all
    (each costs what recompute_attention says). 0: none; recompute_attention=false keeps it in every layer."""
    offload_activations: bool = False
    """Offload the checkpointed hidden states to pinned CPU memory on a side stream (needs activation_checkpointing, GPU)."""
    offload_keep_layers: Any = "auto"
    """With offload_activations: the checkpoints of the last N decoder layers stay on the GPU (the first backward
    needs them at once). Each kept layer trades s_local x hidden x 2 B of GPU memory for the same of host RAM per
    rank. auto: the fewest (at least 1) that keep the host RAM plan under 95% of the node's RAM, printed at startup;
    so a sweep over lengths moves checkpoints to the GPUs only where the host runs out."""
    tiled_mlp: bool = False
    """Compute each decoder MLP in sequence tiles (DeepSpeed's TiledMLP); recomputes the MLP forward in backward."""
    tiled_mlp_shards: int = 0
    """Tiles per MLP call. 0: ceil(s_local / hidden_size), the max over ranks."""
    liger: bool = False
    """Apply Liger kernels (RMSNorm, RoPE, SwiGLU) where installed; with loss.tiled it supplies the fused linear CE."""


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_dtype(name: str, device_type: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return DTYPES[name]


def hf_config(*, name_or_path: Optional[str], arch: Dict[str, Any]):
    """The transformers config the model is built from (no weights loaded)."""
    from transformers import AutoConfig

    if name_or_path:
        return AutoConfig.from_pretrained(name_or_path)
    fields = dict(arch)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


class _ZeRO3Config:
    """What transformers asks of a DeepSpeed config (`is_zero3()`, `.config`); HfDeepSpeedConfig would do the same
    but needs accelerate, which this project does not depend on."""

    def __init__(self, config):
        self.config = config

    def is_zero3(self) -> bool:
        return True


_ZERO3 = None  # kept alive for the process: transformers holds only a weak reference


def announce_zero3(ds_config):
    """Make transformers build and load models under ZeRO-3: zero.Init partitions each weight as it is created,
    random weights are initialized gathered module by module on rank 0 (transformers' initialize_weights_zero3),
    pretrained ones are loaded into their partitions. All ranks must call this before building the model."""
    global _ZERO3
    import torch._dynamo  # noqa: F401  (imported before zero.Init patches tensor creation, which breaks its import)
    from transformers.integrations.deepspeed import set_hf_deepspeed_config

    _ZERO3 = _ZeRO3Config(ds_config)
    set_hf_deepspeed_config(_ZERO3)


def build_model(*, cfg, attn_implementation: str, device_type: str):
    """Build the HF causal LM (the ALST features are applied by framework.model.features)."""
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(cfg.dtype, device_type)
    if cfg.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(cfg.name_or_path, dtype=torch_dtype,
                                                     attn_implementation=attn_implementation)
    else:
        config = hf_config(name_or_path=None, arch=cfg.arch)
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False
    return model
