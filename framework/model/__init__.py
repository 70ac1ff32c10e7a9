"""model: a Hugging Face causal LM, from a local directory / hub id or from architecture fields with random weights,
with the ALST memory features (framework.model.features) applied."""

from framework.model.build import announce_zero3, build_model, hf_config, resolve_dtype
from framework.model.config import Dtype, ModelConfig

__all__ = ["Dtype", "ModelConfig", "announce_zero3", "build_model", "hf_config", "resolve_dtype"]
