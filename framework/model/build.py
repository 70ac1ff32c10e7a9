"""Build the Hugging Face causal LM: from a local directory / hub id, or from architecture fields with random
weights."""

import contextlib
import json
import os
from typing import Any, Dict, Optional

import torch
from framework.builder import builds
from framework.model.config import ModelConfig


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_dtype(name: str, device_type: str) -> torch.dtype:
    name = str(name)
    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return DTYPES[name]


def adapter_base(name_or_path: str) -> Optional[str]:
    """The base model of a PEFT (LoRA) adapter directory, None for anything else. transformers loads such a directory
    as the base with the adapter on it (from_pretrained); its config is the base's."""
    path = os.path.join(os.path.expanduser(name_or_path), "adapter_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("base_model_name_or_path")


def hf_config(*, name_or_path: Optional[str], arch: Dict[str, Any]):
    """The transformers config the model is built from (no weights loaded). The launcher's first use of
    transformers: imported without torchvision and scikit-learn (framework.imports)."""
    from framework.imports import hidden

    with hidden():
        from transformers import AutoConfig

        if name_or_path:
            return AutoConfig.from_pretrained(adapter_base(name_or_path) or name_or_path)
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


@builds(ModelConfig)
def build_model(*, cfg, attn_implementation: str, device_type: str):
    """Build the HF causal LM (the ALST features are applied by framework.model.features).

    Weights are made or loaded where they will live. Without ZeRO-3 the model is built on this rank's GPU: random
    weights initialized there (the Llama-3.2-1B shape took 75 s on the CPU, one thread per worker, and about 0.6 s on
    an H200) and pretrained ones loaded straight onto it. Under ZeRO-3 transformers' zero.Init partitions them as
    they are created or loaded (framework.model.build.announce_zero3). The same seed gives the same weights at any
    SP size: every rank draws the whole model from the same generator.
    """
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    torch_dtype = resolve_dtype(cfg.dtype, device_type)
    device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
    on_device = device_type == "cuda" and not is_deepspeed_zero3_enabled()
    if cfg.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(
            cfg.name_or_path,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            device_map={"": device} if on_device else None,
        )
    else:
        config = hf_config(name_or_path=None, arch=cfg.arch)
        with device if on_device else contextlib.nullcontext():
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn_implementation)
    model.config.use_cache = False
    return model
