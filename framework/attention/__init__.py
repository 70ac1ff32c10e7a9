"""attention: the core attention implementation, kept per document for packed rows (framework.attention.packed), and
the Ulysses SP wrapper around it (DeepSpeed's UlyssesSPAttentionHF, framework.attention.ulysses), and ring attention
over the cp ranks as that core when parallelism.cp_size > 1 (framework.attention.ring)."""

from framework.attention.config import AttentionConfig, AttnImpl
from framework.attention.ulysses import apply_sp_attention

__all__ = ["AttentionConfig", "AttnImpl", "apply_sp_attention"]
