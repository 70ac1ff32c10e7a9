"""The DeepSpeed engine: its config generated from engine.* (ZeRO stage, offload, buckets, the Ulysses all-to-all's
dtype), and the engine built around the module (model + loss) with its optimizer and LR schedule."""

from typing import Any, Dict

import torch
from omegaconf import OmegaConf
from framework.builder import builds
from framework.engine.config import EngineConfig


def deepspeed_config(
    ecfg, *, grad_clip: float, dtype: torch.dtype, micro_batch_size: int, gradient_accumulation_steps: int
) -> Dict[str, Any]:
    zero: Dict[str, Any] = {
        "stage": ecfg.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": ecfg.reduce_bucket_size,
    }
    if ecfg.zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=ecfg.reduce_bucket_size,
            stage3_param_persistence_threshold=1e5,
            stage3_gather_16bit_weights_on_model_save=False,
        )
    if ecfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
        if ecfg.zero_stage == 3 and ecfg.offload_ratio < 1.0:
            zero["offload_optimizer"]["ratio"] = ecfg.offload_ratio
        if ecfg.super_offload:
            zero["offload_optimizer"]["super_offload"] = True
    if ecfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    comm = {"auto": dtype, "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[
        str(ecfg.sp_comm_dtype)
    ]
    cfg = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "gradient_clipping": grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "fp16": {"enabled": dtype == torch.float16},
        "seq_parallel_communication_data_type": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(comm, "fp32"),
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    over = ecfg.deepspeed
    return merge(cfg, OmegaConf.to_container(over, resolve=True) if OmegaConf.is_config(over) else dict(over))


def merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@builds(EngineConfig)
def build_engine(module, *, cfg, optimizer, scheduler, ds_cfg: Dict[str, Any], mpu):
    """Wrap `module` (model + loss) in a DeepSpeed engine with the optimizer and LR schedule built for it.
    optimizer=None (eval.only): no optimizer and no optimizer state, forward only (ZeRO-3 still partitions the
    weights)."""
    import deepspeed

    from framework.engine.lazy_compile import defer_deepspeed_compile

    defer_deepspeed_compile()  # CPU: before deepspeed.initialize imports its Muon module
    if optimizer is None:
        for p in module.parameters():
            p.requires_grad_(False)
        if ds_cfg["zero_optimization"]["stage"] in (1, 2):  # they partition optimizer state and gradients: none here
            ds_cfg = merge(ds_cfg, {"zero_optimization": {"stage": 0}})  # DeepSpeed refuses them without an optimizer
        engine, *_ = deepspeed.initialize(model=module, config=ds_cfg, mpu=mpu)
        return engine
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_cfg, mpu=mpu)
    return engine
