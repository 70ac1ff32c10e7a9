"""The base of every closed choice in the config (`optim.schedule`, `train.device`, ...): a str Enum, so a typo
fails at compose time naming the full key and the allowed values, and a member compares and prints as its value."""

from enum import Enum
from typing import Any


class Choice(str, Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


Switch = Any
"""A true / false / auto field (model.recompute_attention, tiled_mlp, offload_activations). Not an Enum: OmegaConf 2.3
rejects a bool for an Enum field (so `model.tiled_mlp=true` would fail) and has no Union of bool and str; the three
values are checked before any worker starts (framework.plan.rules.check_switches) and `auto` is resolved once
(framework.resolve)."""
