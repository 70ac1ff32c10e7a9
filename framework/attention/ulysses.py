"""The Ulysses SP wrapper around the core attention implementation (DeepSpeed's UlyssesSPAttentionHF); with
cp_size > 1 the core is ring attention over the mesh's cp group (framework.attention.ring)."""

import importlib.util

import torch.distributed as dist
from framework.attention.config import AttentionConfig
from framework.builder import builds

from framework.parallelism.config import MeshAxis

CP, SP = MeshAxis.CP.value, MeshAxis.SP.value


@builds(AttentionConfig)
def apply_sp_attention(
    model, *, cfg, mesh, micro_batch_size: int, seq_length_is_variable: bool, seq_length: int | None
):
    """Wrap the model's core attention in the Ulysses all-to-all for the mesh's SP group, and make the core the ring
    over the mesh's cp group when cp_size > 1.

    Registers DeepSpeed's UlyssesSPAttentionHF in place of `implementation` inside transformers, so every code
    path keyed on the implementation's name still runs. Returns the mpu DeepSpeed reduces gradients with (its
    sequence-parallel group is the ranks sharing a sequence: sp, or cp x sp), or None when both sizes are 1. All
    ranks must call this (it creates process groups); the groups it makes are checked to be the mesh's own.
    """
    impl = getattr(cfg.implementation, "value", cfg.implementation)
    cp_mesh, sp_mesh = mesh[CP], mesh[SP]
    if cp_mesh.size() > 1:  # the ring replaces the core (it keeps packed documents apart itself)
        from framework.attention.ring import install as install_ring

        install_ring(impl, cp_mesh.get_group())
    elif cfg.get("document_masking", True):  # before Ulysses wraps it, so the wrapper calls the document-aware core
        from framework.attention.packed import install

        install(impl)
    mpu = None
    if sp_mesh.size() > 1:
        from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

        if seq_length is not None:
            seq_length //= cp_mesh.size()  # Ulysses sees the s / cp tokens of this rank's ring chunks
        mpu = UlyssesSPAttentionHF.register_with_transformers(
            model_name_or_path=model,
            core_attn_implementation=impl,
            sequence_parallel_size=sp_mesh.size(),
            micro_batch_size=micro_batch_size,
            seq_length=seq_length,
            seq_length_is_variable=seq_length_is_variable,
        )
        _check_same(sp_mesh.get_group(), mpu.get_sequence_parallel_group(), "SP")
    if cp_mesh.size() > 1:
        mpu = _sequence_mpu(cp_mesh.size() * sp_mesh.size())
        _check_same(mesh[(CP, SP)]._flatten(f"{CP}_{SP}").get_group(), mpu.get_sequence_parallel_group(), "cp x sp")
    return mpu


def _sequence_mpu(size: int):
    """DeepSpeed's own SP mpu (deepspeed.runtime.sequence_parallel.parallel_state_sp) for groups of `size` ranks.

    DeepSpeed's gradient reduction treats the mpu's sequence-parallel ranks as holding partial gradients of one
    sample and sums them (ZeRO-1/2 and ZeRO-3's all-reduce divide by world / size, not by world); with ring
    attention those ranks are the whole cp x sp block, so DeepSpeed gets an mpu of that size. Ulysses keeps the
    module's global groups of sp ranks, so this is a second, separate instance of the module (its groups live in
    module globals). All ranks must call this (it creates process groups)."""
    spec = importlib.util.find_spec("deepspeed.runtime.sequence_parallel.parallel_state_sp")
    mpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mpu)
    mpu.initialize_sequence_parallel(sequence_parallel_size=size)
    return mpu


def _check_same(ours, theirs, what: str):
    ours, theirs = dist.get_process_group_ranks(ours), dist.get_process_group_ranks(theirs)
    if ours != theirs:
        raise RuntimeError(f"DeepSpeed's {what} group {theirs} differs from the mesh's {ours}")
