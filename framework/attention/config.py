"""attention's config: the core kernel and whether packed documents are kept apart."""

from dataclasses import dataclass

from framework.choice import Choice


class AttnImpl(Choice):
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"
    flash_attention_3 = "flash_attention_3"
    flex_attention = "flex_attention"
    eager = "eager"


@dataclass
class AttentionConfig:
    _target_: str = "framework.attention.ulysses.apply_sp_attention"
    implementation: AttnImpl = AttnImpl.sdpa
    """Core attention kernel the model runs (inside the Ulysses all-to-all when sp_size > 1)."""
    document_masking: bool = True
    """Keep the documents of packed rows apart (framework.attention.packed). false: rows attend across documents."""
