"""The Ulysses SP wrapper around the core attention implementation (DeepSpeed's UlyssesSPAttentionHF)."""
import torch.distributed as dist


def apply_sp_attention(model, *, cfg, mesh, micro_batch_size: int, seq_length_is_variable: bool,
                       seq_length: int | None):
    """Wrap the model's core attention in the Ulysses all-to-all for the mesh's SP group.

    Registers DeepSpeed's UlyssesSPAttentionHF in place of `implementation` inside transformers, so every code
    path keyed on the implementation's name still runs. Returns DeepSpeed's mpu (its SP/DP groups), or None when
    sp_size == 1. All ranks must call this (it creates process groups); the groups it makes are checked to be the
    mesh's own.
    """
    impl = getattr(cfg.implementation, "value", cfg.implementation)
    if cfg.get("document_masking", True):  # before Ulysses wraps it, so the wrapper calls the document-aware core
        from framework.attention.packed import install

        install(impl)
    sp_mesh = mesh["sp"]
    if sp_mesh.size() == 1:
        return None
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPAttentionHF

    mpu = UlyssesSPAttentionHF.register_with_transformers(
        model_name_or_path=model, core_attn_implementation=impl, sequence_parallel_size=sp_mesh.size(),
        micro_batch_size=micro_batch_size, seq_length=seq_length, seq_length_is_variable=seq_length_is_variable)
    ours = dist.get_process_group_ranks(sp_mesh.get_group())
    theirs = dist.get_process_group_ranks(mpu.get_sequence_parallel_group())
    if ours != theirs:
        raise RuntimeError(f"DeepSpeed's SP group {theirs} differs from the mesh's {ours}")
    return mpu
