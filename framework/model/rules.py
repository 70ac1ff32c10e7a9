"""model's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""

import importlib.util
import os

from framework.errors import ConfigError
from framework.model.build import hf_config
from framework.runtime import device_type
from framework.tracker.flops import matmul_params

WEIGHTS = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
"""What from_pretrained loads weights from (a sharded checkpoint's index included)."""


def model_config(m, *, device: str):
    """The model's transformers config, resolved once (validation passes it on): refuses a missing directory, an
    architecture without model_type or with a bad field, and a model too large to train on CPU processes."""
    if m.name_or_path is None and "model_type" not in m.arch:
        raise ConfigError(
            "model.arch",
            dict(m.arch),
            "needs model_type when model.name_or_path is null",
            "pick a preset (model=tiny_llama, llama3_8b, ...) or set model.name_or_path",
        )
    local = m.name_or_path and (m.name_or_path.startswith((".", "/", "~")) or os.path.isdir(m.name_or_path))
    if local and not os.path.isdir(os.path.expanduser(m.name_or_path)):
        raise ConfigError(
            "model.name_or_path",
            m.name_or_path,
            "no such directory",
            "give a model directory (with config.json) or a hub id",
        )
    if (
        local
        and os.path.isfile(os.path.join(os.path.expanduser(m.name_or_path), "config.json"))
        and not any(n.endswith(WEIGHTS) for n in os.listdir(os.path.expanduser(m.name_or_path)))
    ):
        raise ConfigError(
            "model.name_or_path",
            m.name_or_path,
            "holds config.json but no weights (*.safetensors, *.bin)",
            "copy the weights in (an interrupted download?), or train from random weights: "
            "model.name_or_path=null with the architecture in model.arch",
        )
    try:
        config = hf_config(name_or_path=m.name_or_path, arch=m.arch)
        text = config.get_text_config()
    except Exception as exc:  # noqa: BLE001  (unknown model_type, bad field, unreachable hub)
        key = "model.name_or_path" if m.name_or_path else "model.arch"
        why = " ".join(str(exc).split())[:200]
        raise ConfigError(
            key,
            m.name_or_path or dict(m.arch),
            f"cannot build its config ({why})",
            "check the model directory / hub id, or the architecture fields",
        ) from None
    billions = matmul_params(text) / 1e9
    if device_type(device) == "cpu" and billions > 1.0:
        raise ConfigError(
            "train.device",
            f"{device} (resolves to cpu)",
            f"the model has {billions:.1f}B parameters; training it on CPU processes would take "
            "hours per step and tens of GiB of RAM per process",
            "run on a machine with GPUs, or pick a small model (model=tiny_llama)",
        )
    return config


def check_features(m, *, config, device: str, attention: str, environment: bool = True):
    """The ALST features: what each needs (checkpointing, sdpa, a GPU, liger-kernel) and their ranges
    (`environment`: also that liger-kernel is installed here; plan=true plans for another machine)."""
    text = config.get_text_config()
    if m.offload_activations is True and not m.activation_checkpointing:
        raise ConfigError(
            "model.offload_activations",
            True,
            "offloads the hidden states that activation checkpointing keeps, so it needs it",
            "also set model.activation_checkpointing=true",
        )
    keep = m.get("offload_keep_layers", "auto")
    if keep != "auto" and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
        raise ConfigError(
            "model.offload_keep_layers",
            keep,
            "must be auto or a whole number >= 0 (decoder layers whose checkpoints stay on the GPU)",
            "e.g. model.offload_keep_layers=auto (the default)",
        )
    kept = m.get("keep_attention_layers", 0)
    if not isinstance(kept, int) or isinstance(kept, bool) or not 0 <= kept <= text.num_hidden_layers:
        raise ConfigError(
            "model.keep_attention_layers",
            kept,
            f"must be a whole number from 0 to the model's "
            f"{text.num_hidden_layers} decoder layers (those that keep attention's output)",
            f"e.g. model.keep_attention_layers={text.num_hidden_layers // 2}, or "
            "model.recompute_attention=false for all of them",
        )
    keeping = [("model.recompute_attention", False)] if m.get("recompute_attention", True) is False else []
    keeping += [("model.keep_attention_layers", kept)] if kept else []
    if len(keeping) == 2:
        raise ConfigError(
            "model.keep_attention_layers",
            kept,
            "picks layers that keep attention's output while the "
            "others recompute it, and model.recompute_attention=false already keeps it in every layer",
            "drop one of the two overrides",
        )
    for key, value in keeping:
        if not m.activation_checkpointing:
            raise ConfigError(
                key,
                value,
                "decides what activation checkpointing recomputes, and checkpointing is off (nothing is recomputed)",
                "also set model.activation_checkpointing=true, or drop the override",
            )
        if attention != "sdpa":
            raise ConfigError(
                key,
                value,
                f"keeps the outputs of the sdpa kernels (and of varlen_attn for packed "
                f"rows); {attention}'s kernel would be recomputed anyway",
                "use attention=sdpa, or drop the override",
            )
    if m.liger and environment and importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError(
            "model.liger",
            True,
            "liger-kernel is not installed",
            "pip install -e '.[gpu]' (or pip install liger-kernel), or set model.liger=false",
        )
    if m.liger and device_type(device) == "cpu":
        raise ConfigError("model.liger", True, "Liger's kernels are Triton GPU kernels", "set model.liger=false")
    if m.liger and environment:
        if config.model_type not in liger_model_types():
            raise ConfigError(
                "model.liger",
                True,
                f"Liger has no kernels for model_type {config.model_type!r}",
                "set model.liger=false",
            )


LIGER_TABLE = "MODEL_TYPE_TO_APPLY_LIGER_FN"
"""liger_kernel.transformers.monkey_patch's table of the model types it patches."""


def liger_model_types() -> frozenset:
    """The model types Liger patches: LIGER_TABLE's keys, read from the module's source when it writes them as a dict
    literal (Liger 0.8), else by importing it. Importing it imports Liger's Triton kernels and a dozen transformers
    model families, seconds of the launcher's validation on a GPU machine for a lookup; the workers import it anyway."""
    import ast

    origin = getattr(importlib.util.find_spec("liger_kernel"), "origin", None)
    body = []
    if origin:
        try:
            with open(os.path.join(os.path.dirname(origin), "transformers", "monkey_patch.py")) as f:
                body = ast.parse(f.read()).body
        except (OSError, SyntaxError, ValueError):
            pass
    for node in body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == [LIGER_TABLE]
            and isinstance(node.value, ast.Dict)
            and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.value.keys)
        ):
            return frozenset(k.value for k in node.value.keys)
    return frozenset(getattr(importlib.import_module("liger_kernel.transformers.monkey_patch"), LIGER_TABLE))


def check_lora(lora, *, config, super_offload: bool):
    """model.lora: ranges, peft installed, and target modules the model has (checked on a meta-device copy of the
    model: no memory, no weights)."""
    if lora.r < 0:
        raise ConfigError("model.lora.r", lora.r, "must be 0 (no LoRA) or a positive rank", "e.g. model.lora.r=16")
    if lora.r == 0:
        return
    if lora.alpha <= 0:
        raise ConfigError(
            "model.lora.alpha",
            lora.alpha,
            "must be positive (the adapter's scale is alpha / r)",
            f"e.g. model.lora.alpha={2 * lora.r}",
        )
    if not 0 <= lora.dropout < 1:
        raise ConfigError("model.lora.dropout", lora.dropout, "must be from 0 to below 1", "e.g. model.lora.dropout=0")
    if importlib.util.find_spec("peft") is None:
        raise ConfigError(
            "model.lora.r",
            lora.r,
            "LoRA needs the peft package, which is not installed",
            "pip install peft, or set model.lora.r=0",
        )
    if super_offload:
        raise ConfigError(
            "engine.super_offload",
            True,
            "overlaps a CPU optimizer with backward, and with LoRA the "
            "optimizer only holds the adapters (megabytes): nothing to overlap, and SuperOffload with "
            "frozen weights is untested here",
            "set engine.super_offload=false engine.offload_optimizer=false",
        )
    names = [str(t) for t in lora.target_modules]
    if not names:
        raise ConfigError(
            "model.lora.target_modules",
            names,
            "needs at least one module name",
            "e.g. model.lora.target_modules=[all-linear]",
        )
    if names == ["all-linear"]:
        return
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        modules = [
            n for n, mod in AutoModelForCausalLM.from_config(config).named_modules() if isinstance(mod, torch.nn.Linear)
        ]
    missing = [t for t in names if not any(n == t or n.endswith("." + t) for n in modules)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in modules})
        raise ConfigError(
            "model.lora.target_modules",
            names,
            f"{missing} name no linear layer of this model (its linear layers: {leaves})",
            "pick from those names, or use [all-linear]",
        )
