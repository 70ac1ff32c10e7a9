"""attention's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""

import importlib.util

import torch

from framework.attention.packed import DOCUMENT_MASKED
from framework.errors import ConfigError
from framework.runtime import device_type


def installed(impl: str) -> tuple[bool, str]:
    """Whether `impl` can run here, and if not why."""
    if impl == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        return False, "the flash_attn package is not installed"
    if impl == "flash_attention_3" and importlib.util.find_spec("flash_attn_interface") is None:
        return False, "the flash_attn_interface (FlashAttention-3) package is not installed"
    return True, ""


def check(a, *, sp_size: int, device: str):
    """The kernel: installed, able to run on this device, and able to run inside Ulysses SP."""
    impl = str(a.implementation)
    if sp_size > 1 and impl == "eager":
        raise ConfigError(
            "attention.implementation",
            impl,
            "eager needs a 4-D [s, s] attention mask, which Ulysses SP cannot carry",
            "use attention=sdpa or attention=flex_attention",
        )
    ok, why = installed(impl)
    if not ok:
        raise ConfigError("attention.implementation", impl, why, "install it, or use attention=sdpa")
    if impl.startswith("flash") and device_type(device) == "cpu":
        raise ConfigError("attention.implementation", impl, "FlashAttention needs a GPU", "use attention=sdpa on CPU")


def check_packed(a, *, text_config, device: str, packing: bool, micro_batch_size: int):
    """Refuse the setups where packed documents would not stay apart, or the kernel cannot train here."""
    impl = str(a.implementation)
    if impl == "flex_attention" and device_type(device) == "cpu":
        raise ConfigError(
            "attention.implementation",
            impl,
            f"FlexAttention has no backward pass on CPU (torch {torch.__version__}), so it cannot train here",
            "use attention=sdpa on CPU",
        )
    if impl.startswith("flash") and packing and micro_batch_size > 1:
        raise ConfigError(
            "train.micro_batch_size",
            micro_batch_size,
            f"{impl} keeps packed documents apart only for one row per micro batch (transformers "
            "runs flash varlen from position_ids only when the batch size is 1)",
            "set train.micro_batch_size=1 (raise data.seq_length or gradient_accumulation_steps), "
            "or use attention=sdpa / flex_attention",
        )
    if a.get("document_masking", True) and impl in DOCUMENT_MASKED:
        layer_types = getattr(text_config, "layer_types", None) or []
        if any(t != "full_attention" for t in layer_types):
            raise ConfigError(
                "attention.document_masking",
                True,
                f"the model has {sorted(set(layer_types))} "
                "layers, and document masking implements full causal attention only",
                "set attention.document_masking=false with data.packing=false, or use a model with "
                "full attention in every layer",
            )


def check_ring(a, *, parallelism, text_config, packing: bool, model):
    """Ring attention (parallelism.cp_size > 1): what it is built from and what it covers. It runs sdpa's kernels on
    causal rows (packed rows with their documents kept apart) with full attention in every layer; packed rows that
    attend across documents and keeping attention's output under checkpointing (the ring's kernels run inside its own
    autograd function) are not implemented, so they are refused rather than run wrongly."""
    cp = parallelism.cp_size
    if cp == 1:
        return
    impl = str(a.implementation)
    if impl != "sdpa":
        raise ConfigError(
            "attention.implementation",
            impl,
            f"ring attention (parallelism.cp_size={cp}) runs sdpa's "
            "kernels (the ones that return the log-sum-exp it merges by)",
            "use attention=sdpa, or parallelism.cp_size=1",
        )
    if packing and not a.get("document_masking", True):
        raise ConfigError(
            "attention.document_masking",
            False,
            f"ring attention (parallelism.cp_size={cp}) puts "
            "packed rows in a per-document order and always keeps their documents apart",
            "drop attention.document_masking=false, or set data.packing=false",
        )
    layer_types = getattr(text_config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ConfigError(
            "parallelism.cp_size",
            cp,
            f"the model has {sorted(set(layer_types))} layers, and ring "
            "attention implements full causal attention only",
            "set parallelism.cp_size=1, or use a model with full attention in every layer",
        )
    if getattr(text_config, "attention_dropout", 0.0):
        raise ConfigError(
            "parallelism.cp_size",
            cp,
            f"the model has attention_dropout={text_config.attention_dropout}, and ring attention has no dropout",
            "set parallelism.cp_size=1, or model.arch.attention_dropout=0",
        )
    kept = model.get("keep_attention_layers", 0)
    keeping = (
        [("model.recompute_attention", False)]
        if not model.recompute_attention
        else [("model.keep_attention_layers", kept)]
        if kept
        else []
    )
    if model.activation_checkpointing and keeping:
        key, value = keeping[0]
        raise ConfigError(
            key,
            value,
            "keeps attention's kernel outputs under checkpointing, which ring attention "
            f"(parallelism.cp_size={cp}) does not implement (the ring is recomputed)",
            "drop the override (recompute attention), or set parallelism.cp_size=1",
        )
