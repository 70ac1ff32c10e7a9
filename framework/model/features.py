"""The ALST memory features applied to a built HF model: Liger kernels, tiled MLP, activation checkpointing, and the
context that offloads checkpointed hidden states to CPU."""

import contextlib
import functools
import math

import torch
import torch.distributed as dist


def decoder_layers(model):
    """The decoder layers of any HF causal LM (the modules transformers checkpoints)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def apply_liger(model):
    """Liger's RMSNorm, RoPE and SwiGLU kernels on this model instance (its loss kernels are the loss group's)."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    quiet_liger_backends()
    _apply_liger_kernel_to_instance(model=model, cross_entropy=False, fused_linear_cross_entropy=False)


LIGER_OTHER_BACKENDS = ("._cutedsl.", "._cutile.", "._ascend.")
"""Liger's optional kernel backends (CUTLASS's CuTe DSL, NVIDIA cuTile, Huawei Ascend) beside its Triton kernels, the
ones we run."""


def quiet_liger_backends():
    """Liger logs a warning per rank at the first call of an op for each optional backend it cannot import ("Backend
    impl '..._cutedsl.rope' for op 'rope' could not be imported"); its Triton kernel runs either way. Drop those
    lines for the backends in LIGER_OTHER_BACKENDS; any other import failure is still logged."""
    import logging

    registry = logging.getLogger("liger_kernel.backends.registry")
    if not any(isinstance(f, _OtherBackends) for f in registry.filters):
        registry.addFilter(_OtherBackends())


class _OtherBackends:
    def filter(self, record) -> bool:
        path = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        return not (str(record.msg).startswith("Backend impl") and any(b in path for b in LIGER_OTHER_BACKENDS))


def tiled_mlp_shards(b: int, s: int, hidden: int, fixed: int, device) -> int:
    """Tiles for the MLP calls of one forward on [b, s, hidden]: `fixed` if > 0, else ceil(b * s / hidden), the
    max over all ranks.

    All ranks must call this when the world has several ranks: under ZeRO-3 each tile gathers the MLP weights, so
    ranks that chose different tile counts would hang.
    """
    if fixed > 0:
        return fixed
    shards = math.ceil(b * s / hidden)
    if dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor(shards, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # every rank; a CPU-GPU sync point
        shards = int(t.item())
    return max(1, min(shards, s))


def apply_tiled_mlp(model, shards: int = 0):
    """Compute every decoder layer's MLP in sequence tiles with DeepSpeed's TiledMLP.

    The MLP's intermediate activations ([b, s, intermediate] x 3) then exist for one tile at a time; the backward
    recomputes each tile's forward. Any MLP module works: its own forward is called on each tile. The tile count is
    agreed once per forward, when the input embedding runs (one all-reduce, not one per MLP call), and the MLPs of
    that forward and of its backward's recomputation use it.
    """
    from deepspeed.runtime.sequence_parallel.ulysses_sp import TiledMLP

    hidden = model.config.get_text_config().hidden_size
    agreed = {}

    def agree(_embedding, args):
        ids = args[0]
        agreed["shards"] = tiled_mlp_shards(ids.shape[0], ids.shape[1], hidden, shards, ids.device)

    model.get_input_embeddings().register_forward_pre_hook(agree)
    count = 0
    for layer in decoder_layers(model):
        mlp = getattr(layer, "mlp", None) or getattr(layer, "feed_forward", None)
        if mlp is None:
            continue
        bound = mlp.forward  # the module's current forward (Liger's SwiGLU when model.liger patched it)

        def forward(x, _mlp=mlp, _bound=bound):
            n = agreed.get("shards") or tiled_mlp_shards(x.shape[0], x.shape[1], x.shape[-1], shards, x.device)
            return TiledMLP.apply(lambda _self, x_tile: _bound(x_tile), _mlp, x, n, list(_mlp.parameters()))

        mlp.forward = forward
        count += 1
    if count == 0:
        raise ValueError(f"model.tiled_mlp: found no decoder MLP in {type(model).__name__}")


ATTENTION_KERNELS = (
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
)
"""aten ops whose outputs model.recompute_attention=false keeps (with torch_attn._varlen_attn, packed rows)."""


def attention_ops() -> list:
    ops = [getattr(torch.ops.aten, name).default for name in ATTENTION_KERNELS if hasattr(torch.ops.aten, name)]
    try:
        ops.append(torch.ops.torch_attn._varlen_attn.default)
    except (AttributeError, RuntimeError):  # torch without varlen_attn
        pass
    return ops


def checkpointing_kwargs(recompute_attention: bool) -> dict:
    """torch.utils.checkpoint arguments for every decoder layer: non-reentrant; when attention is not recomputed,
    a selective-checkpoint context that saves the attention kernels' outputs and recomputes everything else."""
    kwargs = {"use_reentrant": False}
    if not recompute_attention:
        from functools import partial

        from torch.utils.checkpoint import create_selective_checkpoint_contexts

        kwargs["context_fn"] = partial(create_selective_checkpoint_contexts, attention_ops())
    return kwargs


def apply_features(model, *, cfg):
    """Liger's kernels, LoRA, tiled MLP, activation checkpointing, in that order; returns the model to train (with
    LoRA, the peft model wrapping the one given). LoRA comes after Liger (Liger patches the base modules' forwards,
    which then call the adapted projections) and before tiled MLP (each tile's backward must see the adapters)."""
    if cfg.liger:
        apply_liger(model)
    lora = cfg.get("lora")
    if lora is not None and lora.r > 0:
        from framework.model.lora import apply_lora

        model = apply_lora(model, lora)
    if cfg.tiled_mlp:
        apply_tiled_mlp(model, cfg.tiled_mlp_shards)
    if cfg.activation_checkpointing:
        recompute = cfg.get("recompute_attention", True)
        kwargs = checkpointing_kwargs(recompute)
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x's name; the old one warns there
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers 5.17
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if recompute and cfg.get("keep_attention_layers", 0):
            keep_attention_outputs(model, cfg.keep_attention_layers)
        mark_checkpointed_inputs(model)
    return model


def keep_attention_outputs(model, layers: int):
    """model.keep_attention_layers: the last `layers` decoder layers checkpoint with the selective context that
    keeps the attention kernels' outputs (the rest recompute them). The last ones, as offload_keep_layers keeps:
    their backward runs first, so what they keep is freed first."""
    from torch.utils.checkpoint import checkpoint

    keeping = functools.partial(checkpoint, **checkpointing_kwargs(False))
    for layer in decoder_layers(model)[-layers:]:
        layer._gradient_checkpointing_func = keeping


def mark_checkpointed_inputs(model):
    """Mark for the hidden-state offload the tensor each decoder layer's checkpoint really saves.

    DeepSpeed marks the layer's call argument, but ZeRO-3's forward pre-hook (`_post_backward_module_hook`) hands
    the layer a new tensor in its place, so under ZeRO-3 DeepSpeed's mark matches nothing and nothing is offloaded
    (experiments/NOTES.md). Here the mark is made in the checkpoint function itself, on the tensor it is given.
    """
    from deepspeed.runtime.activation_checkpointing.offload_activations import _current_manager

    for layer in decoder_layers(model):
        checkpoint = layer._gradient_checkpointing_func

        def marked(fn, *args, _checkpoint=checkpoint, **kwargs):
            manager = _current_manager()
            if manager is None or not args or not torch.is_tensor(args[0]):
                return _checkpoint(fn, *args, **kwargs)
            manager.mark(args[0])
            try:
                return _checkpoint(fn, *args, **kwargs)
            finally:
                manager._consume_mark(args[0])  # a mark the pack hook did not take (inference) must not linger

        layer._gradient_checkpointing_func = marked


def offload_context(enabled: bool, keep_layers: int = 1):
    """The context, entered once per forward+backward, that offloads checkpointed hidden states to pinned CPU memory
    (DeepSpeed's CheckpointHiddenStatesOffload, see `hidden_states_offload`); a null context when disabled.

    Keep one for the whole run: its pinned buffers are reused from step to step. A fresh one per step pins new
    memory every step (slow), and the old one's buffers stay until Python's cycle collector finds it (the context
    holds its own bound methods; experiments/NOTES.md).
    """
    if not enabled:
        return contextlib.nullcontext()
    return hidden_states_offload()(keep_last_count=keep_layers)


@functools.cache
def hidden_states_offload():
    """DeepSpeed's CheckpointHiddenStatesOffload with one change: a hidden state brought back for its layer's
    backward is handed to that layer's recompute and not kept.

    DeepSpeed 0.19.8 caches every restored tensor until the context exits (for a retain_graph backward, which this
    engine never runs), so by the end of the backward every layer's checkpoint is back on the GPU together and the
    offload lowers no peak (experiments/NOTES.md has the measurement).
    """
    from deepspeed.runtime.activation_checkpointing.offload_activations import (
        CheckpointHiddenStatesOffload,
        _OffloadedTensorRef,
    )

    class HiddenStatesOffload(CheckpointHiddenStatesOffload):
        def _unpack_tensor(self, maybe_ref):
            if isinstance(maybe_ref, _OffloadedTensorRef):
                return self._restore_tensor(maybe_ref.tensor_id, cache=False)  # torch checkpoint unpacks it once
            return maybe_ref

    return HiddenStatesOffload
