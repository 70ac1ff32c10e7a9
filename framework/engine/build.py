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


def reuse_distance(module) -> int:
    """ZeRO-3's stage3_max_reuse_distance for this model: two of its largest decoder layers (in parameters), at most
    DeepSpeed's default (1e9).

    After each module runs, ZeRO-3 walks its recorded module order forward until it has passed that many parameters,
    keeping gathered the weights it meets again on the way (the MLP weights between tiled MLP calls, lm_head between
    loss tiles: each is met first). On a model smaller than 1e9 parameters every walk went to the end of the order:
    quadratic in its length, which tiled MLP with LoRA makes long (a 2-layer model at 2K tokens on CPU: the second
    step 45 s instead of 1.8 s). Two layers reach every reuse a decoder stack has (tiles, a layer's recomputation
    before its backward); engine.deepspeed.zero_optimization.stage3_max_reuse_distance sets another. With each layer
    gathered whole (gather_layers_whole) the order has one entry per layer, and what the distance still decides is
    a layer's recomputation, lm_head's loss tiles and, with per-submodule hooks chosen, the tiles again."""
    from framework.model.features import decoder_layers

    sizes = [sum(getattr(p, "ds_numel", p.numel()) for p in layer.parameters()) for layer in decoder_layers(module)]
    return int(min(1e9, 2 * max(sizes))) if sizes else int(1e9)


def gather_layers_whole(module) -> int:
    """Under ZeRO-3, gather each decoder layer's weights at once, as FSDP's per-layer units do: every decoder layer
    becomes a ZeRO-3 leaf module (DeepSpeed's mechanism for MoE blocks), so ZeRO-3's fetch and release hooks run once
    per layer instead of once per submodule, and its gradients are reduced when the layer's backward is done. Tiled
    MLP and LoRA multiply the submodules (each tile's projections and each adapter's A, B and dropout are hooked
    calls), and those hooks, Python on the host, were most of a short step: the 8B with LoRA at 8K on one H100 took
    5.6 s a step with them, 1.7 s with whole layers (experiments/zero3_layers). The weights held at once are one
    layer (and the next one prefetched), what the planner counts for ZeRO-3; engine.deepspeed.zero_optimization.
    leaf_module, given, is DeepSpeed's own choice instead (`{classes: []}`: per-submodule hooks, its default for dense
    models).
    A leaf layer's hooks need its input to require a gradient: with the embedding frozen (LoRA) and no activation
    checkpointing, the backward met an adapter weight already released ("size of tensor a (0) must match ... (8)").
    So the embedding's output is made to require one, as transformers' enable_input_require_grads does for
    checkpointing with frozen embeddings; the first layer's input gradient is then computed and dropped. Returns how
    many layers it marked."""
    from deepspeed.utils import set_z3_leaf_module

    from framework.model.features import decoder_layers

    layers = decoder_layers(module)
    for layer in layers:
        set_z3_leaf_module(layer, True)
    for m in module.modules() if layers else ():  # the first is the model's own; a PeftModel hands it on
        if hasattr(m, "enable_input_require_grads"):
            m.enable_input_require_grads()
            break
    return len(layers)


@builds(EngineConfig)
def build_engine(module, *, cfg, optimizer, scheduler, ds_cfg: Dict[str, Any], mpu):
    """Wrap `module` (model + loss) in a DeepSpeed engine with the optimizer and LR schedule built for it.
    optimizer=None (eval.only): no optimizer and no optimizer state, forward only (ZeRO-3 still partitions the
    weights)."""
    import deepspeed

    from framework.engine.lazy_compile import defer_deepspeed_compile

    defer_deepspeed_compile()  # CPU: before deepspeed.initialize imports its Muon module
    zero = ds_cfg["zero_optimization"]
    if zero["stage"] == 3:
        if "stage3_max_reuse_distance" not in zero:
            ds_cfg = merge(ds_cfg, {"zero_optimization": {"stage3_max_reuse_distance": reuse_distance(module)}})
        if "leaf_module" not in zero:
            gather_layers_whole(module)
    if optimizer is None:
        for p in module.parameters():
            p.requires_grad_(False)
        if ds_cfg["zero_optimization"]["stage"] in (1, 2):  # they partition optimizer state and gradients: none here
            ds_cfg = merge(ds_cfg, {"zero_optimization": {"stage": 0}})  # DeepSpeed refuses them without an optimizer
        engine, *_ = deepspeed.initialize(model=module, config=ds_cfg, mpu=mpu)
        return engine
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_cfg, mpu=mpu)
    return engine
