"""Cross-field rules, checked once in the launching process before any worker starts.

Each rule raises ConfigError(key, value, rule, fix); the CLI prints that one message (no traceback) and stops.
"""
import importlib.util
import os

import torch

from framework.errors import ConfigError
from framework.parallel import resolve_sizes


def world_size(cfg) -> int:
    """Processes the job runs on: torchrun/SLURM's WORLD_SIZE if already launched, else what we will start."""
    p = cfg.parallelism
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if p.num_processes > 0:
        return p.num_processes
    if p.dp_shard_size == -1:
        gpus = torch.cuda.device_count() if device_type(cfg) == "cuda" else 0
        return max(gpus, p.dp_replicate_size * p.sp_size)
    return p.dp_replicate_size * p.dp_shard_size * p.sp_size


def device_type(cfg) -> str:
    if cfg.engine.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.engine.device


def check_parallelism(cfg, world: int):
    p = cfg.parallelism
    if p.sp_backend != "deepspeed":
        raise ConfigError("parallelism.sp_backend", p.sp_backend, "the only sequence-parallel backend is deepspeed",
                          "set parallelism.sp_backend=deepspeed")
    for key in ("sp_size", "dp_replicate_size"):
        if getattr(p, key) < 1:
            raise ConfigError(f"parallelism.{key}", getattr(p, key), "must be at least 1", f"set parallelism.{key}=1")
    if p.dp_shard_size == 0 or p.dp_shard_size < -1:
        raise ConfigError("parallelism.dp_shard_size", p.dp_shard_size, "must be at least 1, or -1 (fill the world)",
                          "set parallelism.dp_shard_size=-1")
    _, shard, _ = resolve_sizes(p, world)
    if shard < 1 or p.dp_replicate_size * shard * p.sp_size != world:
        raise ConfigError(
            "parallelism.sp_size", p.sp_size,
            f"dp_replicate_size x dp_shard_size x sp_size = {p.dp_replicate_size} x {p.dp_shard_size} x {p.sp_size} "
            f"must equal the number of processes ({world})",
            f"choose sizes whose product is {world}, e.g. parallelism.sp_size={world} parallelism.dp_shard_size=1")
    # with no GPU at all, check_engine says so (engine.device=cuda); here only "too few GPUs"
    if device_type(cfg) == "cuda" and torch.cuda.is_available() and "RANK" not in os.environ and \
            world > torch.cuda.device_count():
        raise ConfigError("parallelism.sp_size", p.sp_size,
                          f"the job needs {world} GPUs and this machine has {torch.cuda.device_count()}",
                          "lower the sizes, or launch on several nodes with torchrun/srun")


def check_model_and_attention(cfg):
    from framework.model import hf_config

    m, p = cfg.model, cfg.parallelism
    if m.name_or_path is None and "model_type" not in m.arch:
        raise ConfigError("model.arch", dict(m.arch), "needs model_type when model.name_or_path is null",
                          "pick a preset (model=tiny_llama, llama3_8b, ...) or set model.name_or_path")
    local = m.name_or_path and (m.name_or_path.startswith((".", "/", "~")) or os.path.isdir(m.name_or_path))
    if local and not os.path.isdir(os.path.expanduser(m.name_or_path)):
        raise ConfigError("model.name_or_path", m.name_or_path, "no such directory",
                          "give a model directory (with config.json) or a hub id")
    try:
        hc = hf_config(name_or_path=m.name_or_path, arch=m.arch).get_text_config()
    except Exception as exc:  # noqa: BLE001  (unknown model_type, bad field, unreachable hub)
        key = "model.name_or_path" if m.name_or_path else "model.arch"
        raise ConfigError(key, m.name_or_path or dict(m.arch), f"cannot build its config ({' '.join(str(exc).split())[:200]})",
                          "check the model directory / hub id, or the architecture fields") from None
    from framework.track.flops import matmul_params

    billions = matmul_params(hc) / 1e9
    if device_type(cfg) == "cpu" and billions > 1.0:
        raise ConfigError("engine.device", f"{cfg.engine.device} (resolves to cpu)",
                          f"the model has {billions:.1f}B parameters; training it on CPU processes would take "
                          "hours per step and tens of GiB of RAM per process",
                          "run on a machine with GPUs, or pick a small model (model=tiny_llama)")
    sp = p.sp_size
    if hc.num_attention_heads % sp:
        raise ConfigError("parallelism.sp_size", sp,
                          f"the model's {hc.num_attention_heads} query heads must be divisible by sp_size",
                          f"use an sp_size that divides {hc.num_attention_heads}")
    kv = hc.num_key_value_heads
    if kv % sp and sp % kv:
        raise ConfigError("parallelism.sp_size", sp,
                          f"the model's {kv} KV heads must be divisible by sp_size, or sp_size by them",
                          f"use an sp_size that divides {kv} or is a multiple of it")
    impl = getattr(cfg.attention.implementation, "value", cfg.attention.implementation)
    if sp > 1 and impl == "eager":
        raise ConfigError("attention.implementation", impl,
                          "eager needs a 4-D [s, s] attention mask, which Ulysses SP cannot carry",
                          "use attention=sdpa or attention=flex_attention")
    from framework.attention import installed

    ok, why = installed(impl)
    if not ok:
        raise ConfigError("attention.implementation", impl, why, "install it, or use attention=sdpa")
    if impl.startswith("flash") and device_type(cfg) == "cpu":
        raise ConfigError("attention.implementation", impl, "FlashAttention needs a GPU",
                          "use attention=sdpa on CPU")
    if m.offload_activations and not m.activation_checkpointing:
        raise ConfigError("model.offload_activations", True,
                          "offloads the hidden states that activation checkpointing keeps, so it needs it",
                          "also set model.activation_checkpointing=true")
    keep = m.get("offload_keep_layers", "auto")
    if keep != "auto" and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 0):
        raise ConfigError("model.offload_keep_layers", keep, "must be auto or a whole number >= 0 (decoder layers "
                          "whose checkpoints stay on the GPU)", "e.g. model.offload_keep_layers=auto (the default)")
    kept = m.get("keep_attention_layers", 0)
    if not isinstance(kept, int) or isinstance(kept, bool) or not 0 <= kept <= hc.num_hidden_layers:
        raise ConfigError("model.keep_attention_layers", kept, f"must be a whole number from 0 to the model's "
                          f"{hc.num_hidden_layers} decoder layers (those that keep attention's output)",
                          f"e.g. model.keep_attention_layers={hc.num_hidden_layers // 2}, or "
                          "model.recompute_attention=false for all of them")
    keeping = [("model.recompute_attention", False)] if not m.get("recompute_attention", True) else []
    keeping += [("model.keep_attention_layers", kept)] if kept else []
    if len(keeping) == 2:
        raise ConfigError("model.keep_attention_layers", kept, "picks layers that keep attention's output while the "
                          "others recompute it, and model.recompute_attention=false already keeps it in every layer",
                          "drop one of the two overrides")
    for key, value in keeping:
        if not m.activation_checkpointing:
            raise ConfigError(key, value, "decides what activation checkpointing recomputes, and checkpointing is off "
                              "(nothing is recomputed)",
                              "also set model.activation_checkpointing=true, or drop the override")
        if impl != "sdpa":
            raise ConfigError(key, value, f"keeps the outputs of the sdpa kernels (and of varlen_attn for packed "
                              f"rows); {impl}'s kernel would be recomputed anyway", "use attention=sdpa, or drop the "
                              "override")
    if m.liger and importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("model.liger", True, "liger-kernel is not installed", "pip install -e '.[gpu]' (or pip "
                          "install liger-kernel), or set model.liger=false")
    if m.liger and device_type(cfg) == "cpu":
        raise ConfigError("model.liger", True, "Liger's kernels are Triton GPU kernels", "set model.liger=false")
    if m.liger:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

        model_type = hf_config(name_or_path=m.name_or_path, arch=m.arch).model_type
        if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
            raise ConfigError("model.liger", True, f"Liger has no kernels for model_type {model_type!r}",
                              "set model.liger=false")
    if m.dtype not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError("model.dtype", m.dtype, "must be auto, bf16, fp16 or fp32", "set model.dtype=auto")


def check_data(cfg):
    d, p = cfg.data, cfg.parallelism
    if d.source not in ("synthetic", "hf"):
        raise ConfigError("data.source", d.source, "must be synthetic or hf", "use data=synthetic or data=hf")
    if d.seq_length < 1:
        raise ConfigError("data.seq_length", d.seq_length, "must be positive", "set data.seq_length=4096")
    lengths = list(d.lengths) or [d.seq_length]
    if not p.sp_seq_length_is_variable:
        fixed = p.sp_seq_length or d.seq_length
        if fixed % p.sp_size:
            raise ConfigError("parallelism.sp_seq_length" if p.sp_seq_length else "data.seq_length", fixed,
                              f"must be divisible by sp_size={p.sp_size} when sp_seq_length_is_variable=false",
                              f"use a multiple of {p.sp_size}, e.g. {fixed - fixed % p.sp_size or p.sp_size}")
        if d.source == "synthetic" and any(x != fixed for x in lengths):
            raise ConfigError("data.lengths", lengths, f"rows must all be {fixed} tokens when "
                              "sp_seq_length_is_variable=false", "set parallelism.sp_seq_length_is_variable=true")
    if cfg.engine.eval_every > 0 and d.source == "hf" and not d.eval_path:
        raise ConfigError("data.eval_path", d.eval_path, "engine.eval_every > 0 needs held-out rows for data=hf",
                          "set data.eval_path=/path/to/heldout.jsonl, or engine.eval_every=0")
    if d.source == "hf" and not d.path:
        raise ConfigError("data.path", d.path, "data=hf needs a file, glob, directory or hub id",
                          "set data.path=/path/to/corpus.jsonl")
    from framework.data import check  # loads and tokenizes the corpus (fills the cache the workers read)

    check(cfg)


def check_engine(cfg):
    e = cfg.engine
    if e.zero_stage not in (0, 1, 2, 3):
        raise ConfigError("engine.zero_stage", e.zero_stage, "must be 0, 1, 2 or 3", "set engine.zero_stage=3")
    if e.offload_params and e.zero_stage != 3:
        raise ConfigError("engine.offload_params", True, "parameter offload needs ZeRO stage 3",
                          "set engine.zero_stage=3")
    if e.offload_optimizer and e.zero_stage == 0:
        raise ConfigError("engine.offload_optimizer", True, "optimizer offload needs ZeRO stage 1, 2 or 3",
                          "set engine.zero_stage=3")
    if e.super_offload and not (e.offload_optimizer and e.zero_stage == 3):
        raise ConfigError("engine.super_offload", True, "SuperOffload is a mode of ZeRO-3's CPU optimizer offload",
                          "also set engine.offload_optimizer=true engine.zero_stage=3")
    if e.super_offload and device_type(cfg) != "cuda":
        raise ConfigError("engine.super_offload", True, "DeepSpeed's SuperOffload runs only on NVIDIA GPUs",
                          "set engine.super_offload=false on this machine")
    if e.super_offload and cfg.optim.grad_clip > 0:
        raise ConfigError("engine.super_offload", True, f"overlaps the CPU Adam step with backward only without "
                          f"gradient clipping (optim.grad_clip={cfg.optim.grad_clip}); with clipping DeepSpeed 0.19 "
                          "steps after backward, as plain optimizer offload does",
                          "set optim.grad_clip=0 to overlap, or engine.super_offload=false to keep clipping")
    for key in ("max_steps", "micro_batch_size", "gradient_accumulation_steps"):
        if getattr(e, key) < 1:
            raise ConfigError(f"engine.{key}", getattr(e, key), "must be at least 1", f"set engine.{key}=1")
    if e.device not in ("auto", "cpu", "cuda"):
        raise ConfigError("engine.device", e.device, "must be auto, cpu or cuda", "set engine.device=auto")
    if e.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("engine.device", e.device, "no CUDA device is visible", "set engine.device=auto")
    if e.resume not in (None, "latest") and not os.path.isdir(e.resume):
        raise ConfigError("engine.resume", e.resume, "no such checkpoint directory",
                          "give a checkpoints/ directory or checkpoints/step_N, or use engine.resume=latest")
    if cfg.tracker.kind not in ("console", "wandb"):
        raise ConfigError("tracker.kind", cfg.tracker.kind, "must be console or wandb", "use tracker=console")


def validate(cfg) -> int:
    """Check every rule; return the number of processes the job runs on."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)  # bad interpolations / env values of the wrong type
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "?")
        raise ConfigError(key, getattr(exc, "value", None), " ".join(str(exc).split("\n")[0].split()),
                          "fix the value (or the PARALLELISM_CONFIG_* environment variable it comes from)") from None
    world = world_size(cfg)
    check_parallelism(cfg, world)
    check_model_and_attention(cfg)
    check_data(cfg)
    check_engine(cfg)
    return world
