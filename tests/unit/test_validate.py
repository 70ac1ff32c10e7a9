"""One test per rule of framework/validate.py: the config is composed as the CLI composes it (smoke_cpu plus the
overrides), validate() raises ConfigError, and its message names the key, the value, the rule and the fix.

The CLI path of the same errors (exit code 2, one stderr line, nothing half-written) is in tests/e2e/test_cli.py.
"""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import types

import pytest
import torch

from framework.errors import ConfigError
from framework.validate import validate
from helpers import compose


def no_module(*names):
    """A find_spec that says the named top-level modules are not installed."""
    orig = importlib.util.find_spec

    def find_spec(name, *args, **kw):
        return None if name in names else orig(name, *args, **kw)

    return find_spec


def fake_module(*names):
    """A find_spec that says the named modules are installed (their kernels are never loaded by validate)."""
    orig = importlib.util.find_spec

    def find_spec(name, *args, **kw):
        return object() if name in names else orig(name, *args, **kw)

    return find_spec


def gpus(count):
    def patch(mp):
        mp.setattr(torch.cuda, "is_available", lambda: count > 0)
        mp.setattr(torch.cuda, "device_count", lambda: count)

    return patch


NO_WEIGHTS = os.path.join(tempfile.gettempdir(), f"framework_config_only_model_{os.getpid()}")


def config_only_model(path):
    """A model directory with config.json and no weights, as an interrupted download leaves it."""
    from transformers import AutoConfig

    from helpers import TINY

    AutoConfig.for_model("llama", **TINY["llama"]).save_pretrained(path)
    atexit.register(shutil.rmtree, path, True)


# (test id, overrides, patch(monkeypatch) or None, key, rule fragment, fix fragment)
RULES = [
    (
        "sp_size_below_1",
        ["parallelism.sp_size=0"],
        None,
        "parallelism.sp_size",
        "must be at least 1",
        "parallelism.sp_size=1",
    ),
    (
        "cp_size_below_1",
        ["parallelism.cp_size=0"],
        None,
        "parallelism.cp_size",
        "must be at least 1",
        "parallelism.cp_size=1",
    ),
    (
        "dp_replicate_size_below_1",
        ["parallelism.dp_replicate_size=0"],
        None,
        "parallelism.dp_replicate_size",
        "must be at least 1",
        "parallelism.dp_replicate_size=1",
    ),
    (
        "dp_shard_size_zero",
        ["parallelism.dp_shard_size=0"],
        None,
        "parallelism.dp_shard_size",
        "at least 1, or -1",
        "parallelism.dp_shard_size=-1",
    ),
    (
        "sizes_not_multiplying_to_world",
        ["parallelism.num_processes=3"],
        None,
        "parallelism.sp_size",
        "must equal the number of processes (3)",
        "product is 3",
    ),
    (
        "more_gpus_than_the_machine_has",
        ["train.device=cuda"],
        gpus(1),
        "parallelism.sp_size",
        "needs 2 GPUs and this machine has 1",
        "torchrun/srun",
    ),
    (
        "arch_without_model_type",
        ["~model.arch.model_type"],
        None,
        "model.arch",
        "needs model_type when model.name_or_path is null",
        "model=tiny_llama",
    ),
    (
        "billion_parameter_model_on_cpu",
        ["model=llama3_8b"],
        None,
        "train.device",
        "7.5B parameters",
        "model=tiny_llama",
    ),
    (
        "eval_without_held_out_rows",
        ["data=hf", "data.path=/tmp", "eval.every=2"],
        None,
        "data.eval_path",
        "needs held-out rows",
        "data.eval_path=",
    ),
    (
        "model_dir_missing",
        ["model.name_or_path=/no/such/model_dir"],
        None,
        "model.name_or_path",
        "no such directory",
        "config.json",
    ),
    (
        "arch_unknown_model_type",
        ["model.arch.model_type=no_such_family"],
        None,
        "model.arch",
        "cannot build its config",
        "architecture fields",
    ),
    (
        "query_heads_not_divisible_by_sp",
        ["parallelism.sp_size=3"],
        None,
        "parallelism.sp_size",
        "4 query heads must be divisible by sp_size",
        "divides 4",
    ),
    (
        "kv_heads_and_sp_size_not_dividing",
        [
            "parallelism.sp_size=6",
            "model.arch.num_attention_heads=12",
            "model.arch.num_key_value_heads=4",
            "model.arch.hidden_size=96",
        ],
        None,
        "parallelism.sp_size",
        "4 KV heads must be divisible by sp_size, or sp_size by them",
        "multiple of it",
    ),
    (
        "ring_with_eager",
        ["parallelism.sp_size=1", "parallelism.cp_size=2", "attention.implementation=eager"],
        None,
        "attention.implementation",
        "runs sdpa's kernels",
        "use attention=sdpa",
    ),
    (
        "ring_with_packed_rows_across_documents",
        ["parallelism.cp_size=2", "parallelism.sp_size=1", "data.packing=true", "attention.document_masking=false"],
        None,
        "attention.document_masking",
        "always keeps their documents apart",
        "data.packing=false",
    ),
    (
        "ring_with_sliding_window_layers",
        [
            "parallelism.cp_size=2",
            "parallelism.sp_size=1",
            "model=tiny_qwen3",
            "+model.arch.max_window_layers=1",
            "attention.document_masking=false",
            "+model.arch.use_sliding_window=true",
            "+model.arch.sliding_window=64",
        ],
        None,
        "parallelism.cp_size",
        "full causal attention only",
        "parallelism.cp_size=1",
    ),
    (
        "ring_with_attention_dropout",
        ["parallelism.cp_size=2", "parallelism.sp_size=1", "+model.arch.attention_dropout=0.1"],
        None,
        "parallelism.cp_size",
        "ring attention has no dropout",
        "attention_dropout=0",
    ),
    (
        "ring_keeping_attention_outputs",
        [
            "parallelism.cp_size=2",
            "parallelism.sp_size=1",
            "model.activation_checkpointing=true",
            "model.recompute_attention=false",
        ],
        None,
        "model.recompute_attention",
        "ring attention (parallelism.cp_size=2) does not implement",
        "drop the override",
    ),
    (
        "ring_keeping_attention_layers",
        [
            "parallelism.cp_size=2",
            "parallelism.sp_size=1",
            "model.activation_checkpointing=true",
            "model.keep_attention_layers=1",
        ],
        None,
        "model.keep_attention_layers",
        "ring attention (parallelism.cp_size=2) does not implement",
        "drop the override",
    ),
    (
        "eager_with_sp",
        ["attention.implementation=eager"],
        None,
        "attention.implementation",
        "eager needs a 4-D",
        "attention=sdpa",
    ),
    (
        "attention_not_installed",
        ["attention=flash_attention_2"],
        lambda mp: mp.setattr(importlib.util, "find_spec", no_module("flash_attn")),
        "attention.implementation",
        "flash_attn package is not installed",
        "install it, or use attention=sdpa",
    ),
    (
        "flash_attention_on_cpu",
        ["attention=flash_attention_2"],
        lambda mp: mp.setattr("framework.attention.rules.installed", lambda impl: (True, "")),
        "attention.implementation",
        "FlashAttention needs a GPU",
        "attention=sdpa on CPU",
    ),
    (
        "offload_without_checkpointing",
        ["model.offload_activations=true"],
        None,
        "model.offload_activations",
        "needs it",
        "model.activation_checkpointing=true",
    ),
    (
        "offload_keep_layers_negative",
        ["model.offload_keep_layers=-1"],
        None,
        "model.offload_keep_layers",
        "auto or a whole number >= 0",
        "model.offload_keep_layers=auto",
    ),
    (
        "keep_attention_without_checkpointing",
        ["model.recompute_attention=false"],
        None,
        "model.recompute_attention",
        "checkpointing is off",
        "model.activation_checkpointing=true",
    ),
    (
        "keep_attention_with_flex",
        ["model.recompute_attention=false", "model.activation_checkpointing=true", "attention=flex_attention"],
        None,
        "model.recompute_attention",
        "would be recomputed anyway",
        "use attention=sdpa",
    ),
    (
        "keep_attention_layers_above_the_model",
        ["model.keep_attention_layers=3", "model.activation_checkpointing=true"],
        None,
        "model.keep_attention_layers",
        "from 0 to the model's 2 decoder layers",
        "model.recompute_attention=false",
    ),
    (
        "keep_attention_layers_negative",
        ["model.keep_attention_layers=-1"],
        None,
        "model.keep_attention_layers",
        "whole number from 0",
        "model.keep_attention_layers=1",
    ),
    (
        "keep_attention_layers_with_all_kept",
        ["model.keep_attention_layers=1", "model.recompute_attention=false", "model.activation_checkpointing=true"],
        None,
        "model.keep_attention_layers",
        "already keeps it in every layer",
        "drop one of the two overrides",
    ),
    (
        "keep_attention_layers_without_checkpointing",
        ["model.keep_attention_layers=1"],
        None,
        "model.keep_attention_layers",
        "checkpointing is off",
        "model.activation_checkpointing=true",
    ),
    (
        "keep_attention_layers_with_flex",
        ["model.keep_attention_layers=1", "model.activation_checkpointing=true", "attention=flex_attention"],
        None,
        "model.keep_attention_layers",
        "would be recomputed anyway",
        "use attention=sdpa",
    ),
    (
        "liger_not_installed",
        ["model.liger=true"],
        lambda mp: mp.setattr(importlib.util, "find_spec", no_module("liger_kernel")),
        "model.liger",
        "liger-kernel is not installed",
        "pip install liger-kernel",
    ),
    (
        "liger_on_cpu",
        ["model.liger=true"],
        lambda mp: mp.setattr(importlib.util, "find_spec", fake_module("liger_kernel")),
        "model.liger",
        "Triton GPU kernels",
        "model.liger=false",
    ),
    (
        "liger_without_kernels_for_the_model",
        ["model.liger=true", "train.device=cuda"],
        lambda mp: (
            gpus(2)(mp),
            mp.setattr(importlib.util, "find_spec", fake_module("liger_kernel")),
            mp.setitem(
                sys.modules,
                "liger_kernel.transformers.monkey_patch",
                types.SimpleNamespace(MODEL_TYPE_TO_APPLY_LIGER_FN={"qwen3": None}),
            ),
        ),
        "model.liger",
        "no kernels for model_type 'llama'",
        "model.liger=false",
    ),
    (
        "lora_rank_negative",
        ["model.lora.r=-1"],
        None,
        "model.lora.r",
        "0 (no LoRA) or a positive rank",
        "model.lora.r=16",
    ),
    (
        "lora_alpha_not_positive",
        ["model.lora.r=8", "model.lora.alpha=0"],
        None,
        "model.lora.alpha",
        "must be positive",
        "model.lora.alpha=16",
    ),
    (
        "lora_dropout_out_of_range",
        ["model.lora.r=8", "model.lora.dropout=1.0"],
        None,
        "model.lora.dropout",
        "from 0 to below 1",
        "model.lora.dropout=0",
    ),
    (
        "lora_without_peft",
        ["model.lora.r=8"],
        lambda mp: mp.setattr(importlib.util, "find_spec", no_module("peft")),
        "model.lora.r",
        "needs the peft package",
        "pip install peft",
    ),
    (
        "lora_with_super_offload",
        [
            "model.lora.r=8",
            "engine.super_offload=true",
            "engine.offload_optimizer=true",
            "engine.zero_stage=3",
            "optim.grad_clip=0",
            "train.device=cuda",
        ],
        gpus(2),
        "engine.super_offload",
        "with LoRA the optimizer only holds the adapters",
        "engine.super_offload=false",
    ),
    (
        "lora_without_targets",
        ["model.lora.r=8", "model.lora.target_modules=[]"],
        None,
        "model.lora.target_modules",
        "needs at least one module name",
        "[all-linear]",
    ),
    (
        "lora_target_the_model_lacks",
        ["model.lora.r=8", "model.lora.target_modules=[q_proj,query_key_value]"],
        None,
        "model.lora.target_modules",
        "['query_key_value'] name no linear layer",
        "pick from those names",
    ),
    ("seq_length_not_positive", ["data.seq_length=0"], None, "data.seq_length", "must be positive", "data.seq_length="),
    (
        "seq_length_not_divisible_when_fixed",
        ["parallelism.sp_seq_length_is_variable=false", "data.seq_length=255"],
        None,
        "data.seq_length",
        "divisible by sp_size=2 when sp_seq_length_is_variable=false",
        "e.g. 254",
    ),
    (
        "sp_seq_length_not_divisible",
        ["parallelism.sp_seq_length_is_variable=false", "parallelism.sp_seq_length=255"],
        None,
        "parallelism.sp_seq_length",
        "divisible by sp_size=2",
        "multiple of 2",
    ),
    (
        "variable_lengths_when_fixed",
        ["parallelism.sp_seq_length_is_variable=false", "data.lengths=[256,128]"],
        None,
        "data.lengths",
        "rows must all be 256 tokens",
        "parallelism.sp_seq_length_is_variable=true",
    ),
    (
        "hf_without_path",
        ["data._target_=framework.data.loader.hf"],
        None,
        "data.path",
        "data=hf needs a file, glob, directory or hub id",
        "data.path=",
    ),
    (
        "zero_stage_unknown",
        ["engine.zero_stage=4"],
        None,
        "engine.zero_stage",
        "must be 0, 1, 2 or 3",
        "engine.zero_stage=3",
    ),
    (
        "offload_params_without_zero3",
        ["engine.offload_params=true"],
        None,
        "engine.offload_params",
        "needs ZeRO stage 3",
        "engine.zero_stage=3",
    ),
    (
        "offload_optimizer_without_zero",
        ["engine.offload_optimizer=true", "engine.zero_stage=0"],
        None,
        "engine.offload_optimizer",
        "needs ZeRO stage 1, 2 or 3",
        "engine.zero_stage=3",
    ),
    (
        "super_offload_without_optimizer_offload",
        ["engine.super_offload=true"],
        None,
        "engine.super_offload",
        "a mode of ZeRO-3's CPU optimizer offload",
        "engine.offload_optimizer=true",
    ),
    (
        "super_offload_on_cpu",
        ["engine.super_offload=true", "engine.offload_optimizer=true", "engine.zero_stage=3"],
        None,
        "engine.super_offload",
        "only on NVIDIA GPUs",
        "engine.super_offload=false",
    ),
    (
        "super_offload_with_clipping",
        ["engine.super_offload=true", "engine.offload_optimizer=true", "engine.zero_stage=3", "train.device=cuda"],
        gpus(2),
        "engine.super_offload",
        "only without gradient clipping (optim.grad_clip=1.0)",
        "optim.grad_clip=0",
    ),
    ("max_steps_below_1", ["train.max_steps=0"], None, "train.max_steps", "at least 1", "train.max_steps=1"),
    (
        "micro_batch_size_below_1",
        ["train.micro_batch_size=0"],
        None,
        "train.micro_batch_size",
        "at least 1",
        "train.micro_batch_size=1",
    ),
    (
        "gradient_accumulation_below_1",
        ["train.gradient_accumulation_steps=0"],
        None,
        "train.gradient_accumulation_steps",
        "at least 1",
        "train.gradient_accumulation_steps=1",
    ),
    (
        "cuda_without_gpu",
        ["train.device=cuda"],
        gpus(0),
        "train.device",
        "no CUDA device is visible",
        "train.device=auto",
    ),
    (
        "resume_dir_missing",
        ["checkpoint.resume=/no/such/checkpoints"],
        None,
        "checkpoint.resume",
        "no such checkpoint directory",
        "checkpoint.resume=latest",
    ),
    ("eval_steps_below_1", ["eval.steps=0"], None, "eval.steps", "at least 1", "eval.steps=1"),
    (
        "timeout_below_1",
        ["engine.timeout_minutes=0"],
        None,
        "engine.timeout_minutes",
        "at least 1",
        "engine.timeout_minutes=1",
    ),
    ("save_every_negative", ["checkpoint.every=-1"], None, "checkpoint.every", "0 or more", "checkpoint.every=0"),
    (
        "save_every_minutes_negative",
        ["checkpoint.every_minutes=-1"],
        None,
        "checkpoint.every_minutes",
        "0 (no saves by time) or more",
        "checkpoint.every_minutes=30",
    ),
    ("eval_every_negative", ["eval.every=-1"], None, "eval.every", "0 or more", "eval.every=0"),
    (
        "eval_only_resuming",
        ["eval.only=true", "checkpoint.resume=latest"],
        None,
        "checkpoint.resume",
        "loads no checkpoint",
        "model.name_or_path=<run dir>/model",
    ),
    (
        "eval_only_without_model",
        ["eval.only=true"],
        None,
        "model.name_or_path",
        "evaluates a trained model",
        "model.name_or_path=",
    ),
    (
        "position_buckets_not_a_list",
        ["eval.position_buckets=edges"],
        None,
        "eval.position_buckets",
        "`auto` or a list",
        "eval.position_buckets=auto",
    ),
    (
        "position_buckets_not_increasing",
        ["eval.position_buckets=[0,64,32]"],
        None,
        "eval.position_buckets",
        "increasing edges",
        "eval.position_buckets=[0,1024,256]",
    ),
    (
        "position_bucket_edge_past_seq_length",
        ["eval.position_buckets=[0,128,512]"],
        None,
        "eval.position_buckets",
        "edge 512 lies past data.seq_length=256",
        "at 256 or below",
    ),
    (
        "passkey_depth_outside_0_1",
        ["eval.passkey=true", "eval.passkey_depths=[0.5,1.5]"],
        None,
        "eval.passkey_depths",
        "from 0 (start) to 1",
        "eval.passkey_depths=[0.1,0.5,0.9]",
    ),
    (
        "passkey_samples_zero",
        ["eval.passkey=true", "eval.passkey_samples=0"],
        None,
        "eval.passkey_samples",
        "at least 1",
        "eval.passkey_samples=1",
    ),
    (
        "passkey_lengths_not_a_list",
        ["eval.passkey=true", "eval.passkey_lengths=long"],
        None,
        "eval.passkey_lengths",
        "`auto` or a list",
        "eval.passkey_lengths=[128,256]",
    ),
    (
        "passkey_length_past_seq_length",
        ["eval.passkey=true", "eval.passkey_lengths=[512]"],
        None,
        "eval.passkey_lengths",
        "longer than data.seq_length=256",
        "eval.only=true",
    ),
    (
        "passkey_length_too_short_for_a_case",
        ["eval.passkey=true", "eval.passkey_lengths=[4]"],
        None,
        "eval.passkey_lengths",
        "needs at least 12 tokens",
        "longer passkey lengths",
    ),
    (
        "keep_last_negative",
        ["checkpoint.keep_last=-1"],
        None,
        "checkpoint.keep_last",
        "0 or more",
        "checkpoint.keep_last=0",
    ),
    ("seed_negative", ["train.seed=-1"], None, "train.seed", "0 or more", "train.seed=0"),
    (
        "offload_ratio_out_of_range",
        ["engine.offload_ratio=1.5"],
        None,
        "engine.offload_ratio",
        "more than 0, at most 1",
        "engine.offload_ratio=1",
    ),
    ("num_samples_zero", ["data.num_samples=0"], None, "data.num_samples", "at least one row", "data.num_samples="),
    (
        "filler_vocab_of_one_id",
        ["data=long_range", "data.filler_vocab=1"],
        None,
        "data.filler_vocab",
        "random filler needs 2 ids or more",
        "data.filler_vocab=0",
    ),
    (
        "short_lengths_reversed",
        ["data=long_range", "data.packing=true", "data.short_lengths=[64,32]"],
        None,
        "data.short_lengths",
        "must be [lo, hi] with 1 <= lo <= hi",
        "data.short_lengths=[32,64]",
    ),
    (
        "filler_vocab_past_the_vocabulary",
        ["data=long_range", "data.filler_vocab=400"],
        None,
        "data.filler_vocab",
        "a vocabulary of 384 ids has room for 365 filler ids beside the 19",
        "data.filler_vocab=365",
    ),
    (
        "rows_not_splitting_into_sp_shards",
        ["data.seq_length=255"],
        None,
        "data.seq_length",
        "rows of 255 tokens do not split into sp_size=2",
        "e.g. 254",
    ),
    (
        "synthetic_lengths_not_splitting",
        ["data.lengths=[256,127]"],
        None,
        "data.lengths",
        "rows of 127 tokens do not split into sp_size=2",
        "e.g. 126",
    ),
    (
        "model_dir_without_weights",
        [f"model.name_or_path={NO_WEIGHTS}"],
        lambda mp: config_only_model(NO_WEIGHTS),
        "model.name_or_path",
        "holds config.json but no weights",
        "model.name_or_path=null",
    ),
    ("lr_negative", ["optim.lr=-1e-5"], None, "optim.lr", "0 or more", "optim.lr=1e-5"),
    (
        "synthetic_length_with_nothing_to_predict",
        ["data.lengths=[0]", "parallelism.sp_seq_length_is_variable=true"],
        None,
        "data.lengths",
        "a row of 0 tokens has no token to predict",
        "at least 2 tokens",
    ),
    (
        "reduce_bucket_size_zero",
        ["engine.reduce_bucket_size=0"],
        None,
        "engine.reduce_bucket_size",
        "at least 1",
        "engine.reduce_bucket_size=125000000",
    ),
    ("warmup_negative", ["optim.warmup_steps=-1"], None, "optim.warmup_steps", "0 or more", "optim.warmup_steps=0"),
    ("grad_clip_negative", ["optim.grad_clip=-1"], None, "optim.grad_clip", "0 or more", "optim.grad_clip=0"),
    (
        "weight_decay_negative",
        ["optim.weight_decay=-0.1"],
        None,
        "optim.weight_decay",
        "0 or more",
        "optim.weight_decay=0",
    ),
    (
        "min_lr_ratio_out_of_range",
        ["optim.min_lr_ratio=2"],
        None,
        "optim.min_lr_ratio",
        "from 0 to 1",
        "optim.min_lr_ratio=0.1",
    ),
]


@pytest.mark.parametrize("overrides,patch,key,rule,fix", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rejects(overrides, patch, key, rule, fix, monkeypatch):
    cfg = compose(overrides)
    if patch:
        patch(monkeypatch)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    err = info.value
    assert (err.key, rule in err.rule, fix in err.fix) == (key, True, True), str(err)
    assert str(err).startswith(f"{key}=") and "Fix: " in str(err)  # the one-line message: key=value: rule. Fix: fix
    assert "\n" not in str(err)


def test_every_rule_has_a_test():
    """A new `raise ConfigError(` in a group's rules (framework/<group>/rules.py) needs a row above. Counted by call
    site: the loop over sp_size/cp_size/dp_replicate_size, the one over the 3 train counters, the one over the 2
    checkpoint keys that may be 0, the one over the 4 optim ranges, and the two over the 2 keys that keep attention's
    output (model's rules, and attention's for the ring) add 2 + 2 + 1 + 3 + 1 + 1 rows beyond their sites, rows that
    do not split into SP shards name data.seq_length or data.lengths (+1), model.keep_attention_layers' range has a row
    for
    each end (+1), the divisibility rule names data.seq_length or parallelism.sp_seq_length (+1). The rules that need
    the data itself (data.rules.check_corpus) and attention's rules for packed rows (attention.rules.check_packed) are
    tested in test_data_checks.py; the run directory against checkpoint.resume (checkpoint.rules.check_resume) in
    test_checkpoint.py; validate()'s interpolation error is test_bad_environment_value_names_the_key."""
    import ast
    import inspect

    from framework.attention import rules as attention
    from framework.checkpoint import rules as checkpoint
    from framework.data import rules as data
    from framework.engine import rules as engine
    from framework.eval import rules as evaluation
    from framework.model import rules as model
    from framework.optim import rules as optim
    from framework.parallelism import rules as parallelism
    from framework.train import rules as train

    elsewhere = {(attention, "check_packed"), (data, "check_corpus"), (checkpoint, "check_resume")}
    sites = 0
    for module in (attention, checkpoint, data, engine, evaluation, model, optim, parallelism, train):
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, ast.FunctionDef) and (module, node.name) not in elsewhere:
                sites += ast.unparse(node).count("raise ConfigError(")
    assert len(RULES) == sites + 14, (len(RULES), sites)


CLOSED_CHOICES = [
    ("parallelism.sp_backend", "megatron", "deepspeed"),
    ("model.dtype", "fp8", "auto, bf16, fp16, fp32"),
    ("train.device", "tpu", "auto, cpu, cuda"),
    ("engine.sp_comm_dtype", "bf61", "auto, bf16, fp16, fp32"),
    ("train.on_nonfinite", "skpi", "stop, skip"),
    ("optim.schedule", "linaer", "cosine, linear, constant"),
    ("tracker.mode", "ofline", "online, offline, disabled, shared"),
    ("attention.implementation", "flash", "sdpa, flash_attention_2"),
]


@pytest.mark.parametrize("key,value,allowed", CLOSED_CHOICES, ids=[c[0] for c in CLOSED_CHOICES])
def test_closed_choice_typo_fails_at_compose_time_naming_the_full_key(key, value, allowed):
    """Every closed choice is an Enum: a typo (optim.schedule=linaer used to train with cosine) fails when the config
    is composed, naming the full key and the values allowed."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:
        compose([f"{key}={value}"])
    text = f"{info.value} {info.value.__cause__}"
    assert f"full_key: {key}" in text and f"Invalid value '{value}'" in text and allowed in text, text


UNKNOWN = [
    ("+engine.foo=1", "engine.foo", "remove it (the keys here: zero_stage, "),
    ("+engine.save_evry=1", "engine.save_evry", "did you mean checkpoint.every?"),
    ("+checkpoint.evry=1", "checkpoint.evry", "did you mean checkpoint.every?"),
    ("+model.lora.rank=8", "model.lora.rank", "remove it (the keys here: r, alpha"),
    ("+train.max_step=8", "train.max_step", "did you mean train.max_steps?"),
]


@pytest.mark.parametrize("override,key,fix", UNKNOWN, ids=[u[1] for u in UNKNOWN])
def test_rejects_a_key_a_plus_override_added_naming_the_nearest(override, key, fix):
    """Struct mode refuses a typo, but `+` adds the key anyway; validation refuses it (engine.deepspeed and
    model.arch, free-form dicts, take any key)."""
    with pytest.raises(ConfigError) as info:
        validate(compose([override]))
    assert info.value.key == key and "is not a key of the config" in info.value.rule and fix in info.value.fix, str(
        info.value
    )
    assert validate(compose(["+engine.deepspeed.wall_clock_breakdown=false"])).world == 2


def test_smoke_cpu_is_valid_and_runs_on_two_processes():
    assert validate(compose([])).world == 2


def test_bad_environment_value_names_the_key(monkeypatch):
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SIZE", "two")
    with pytest.raises(ConfigError) as info:
        validate(compose([], experiment=None))
    assert info.value.key == "parallelism.sp_size" and "PARALLELISM_CONFIG_" in info.value.fix


def test_valid_cross_field_combinations_pass(monkeypatch):
    """The rules' boundaries: KV replication (sp 4 > 2 KV heads), dp x sp, a fixed length divisible by sp_size."""
    assert validate(compose(["parallelism.sp_size=4"])).world == 4
    assert validate(compose(["parallelism.dp_shard_size=2"])).world == 4
    assert validate(compose(["parallelism.sp_seq_length_is_variable=false", "data.seq_length=254"])).world == 2
    gpus(8)(monkeypatch)
    assert validate(compose(["train.device=cuda", "parallelism.sp_size=4"])).world == 4


def test_ring_sizes_multiply_into_the_world_and_cut_rows_into_2_cp_sp_pieces():
    """cp x sp ranks share a sequence (past the 4 heads: sp 2 x cp 4 = 8 processes); a fixed length must split into
    2 x cp x sp pieces (each ring rank holds 2 chunks); the head-count error names cp_size as the way further."""
    assert validate(compose(["parallelism.cp_size=4"])).world == 8
    assert validate(compose(["parallelism.cp_size=2", "parallelism.dp_shard_size=2"])).world == 8
    fixed = ["parallelism.sp_seq_length_is_variable=false", "parallelism.cp_size=2"]
    assert validate(compose(fixed + ["data.seq_length=248"])).world == 4
    with pytest.raises(ConfigError) as info:
        validate(compose(fixed + ["data.seq_length=252"]))  # divisible by sp x cp = 4, not by 8
    assert "2 x cp_size x sp_size = 8" in info.value.rule and "e.g. 248" in info.value.fix
    with pytest.raises(ConfigError) as info:
        validate(compose(["parallelism.sp_size=8"]))  # 4 query heads
    assert info.value.fix.endswith("parallelism.sp_size=4 parallelism.cp_size=2")


def test_a_cpu_job_larger_than_host_memory_is_refused_before_start():
    """On CPU processes what a GPU would hold lives in host memory: a row of 2^40 tokens is refused by the plan (it
    used to reach the workers and be recorded `failed`); the smoke job fits."""
    with pytest.raises(ConfigError) as info:
        validate(compose(["data.seq_length=1099511627776"]))
    assert info.value.key == "data.seq_length" and "host memory" in info.value.rule, str(info.value)
    assert "\n" not in str(info.value)
    assert validate(compose([])).world == 2
