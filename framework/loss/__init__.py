"""loss: token-weighted causal-LM loss, aggregated across the SP ranks of one sequence; optionally tiled so the full
logits never exist (framework.loss.causal_lm)."""

from framework.loss.causal_lm import IGNORE, CausalLMLoss, aggregate, tiled_ce_sum
from framework.loss.config import LossConfig

__all__ = ["IGNORE", "CausalLMLoss", "LossConfig", "aggregate", "tiled_ce_sum"]
