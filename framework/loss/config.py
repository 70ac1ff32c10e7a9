"""loss's config: whether the logits and cross-entropy are computed tile by tile."""

from dataclasses import dataclass


@dataclass
class LossConfig:
    _target_: str = "framework.loss.causal_lm.CausalLMLoss"
    tiled: bool = False
    """Compute logits + cross-entropy tile by tile so the full [s_local, vocab] logits never exist."""
    tiled_shards: int = 0
    """Tiles for the tiled loss. 0: automatic (each tile's fp32 logits about 1 GiB at most)."""
