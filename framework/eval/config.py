"""eval's config: held-out evaluation inside the training loop, sharded like training."""
from dataclasses import dataclass


@dataclass
class EvalConfig:
    _target_: str = "framework.eval.evaluator.Evaluator"
    every: int = 0
    """Evaluate every N optimizer steps on held-out rows, sharded like training (0: never)."""
    steps: int = 2
    """Micro-batches per evaluation (the same held-out rows every time)."""
