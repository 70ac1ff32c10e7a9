"""eval's config: held-out evaluation inside the training loop (or alone, `only`), sharded like training, with the loss
by position and passkey retrieval."""

from dataclasses import dataclass, field
from typing import Any, List


@dataclass
class EvalConfig:
    _target_: str = "framework.eval.evaluator.Evaluator"
    every: int = 0
    """Evaluate every N optimizer steps on held-out rows, sharded like training (0: never)."""
    steps: int = 2
    """Micro-batches per evaluation (the same held-out rows every time)."""
    only: bool = False
    """Evaluate model.name_or_path once (no optimizer state, no checkpoint, no training) and write the same files."""
    position_buckets: Any = "auto"
    """Edges [e0, e1, ...] of the loss-by-position buckets [e_i, e_i+1) over the predicted token's position in its
    document; auto: 0, then doubling from the largest power of two <= seq_length / 64 up to seq_length."""
    passkey: bool = False
    """Also score passkey retrieval at each evaluation (teacher-forced, one forward per case)."""
    passkey_lengths: Any = "auto"
    """Context lengths in tokens (each rounded down to a multiple of the row's shards); auto: seq_length x 1/8, 1/4,
    1/2, 1."""
    passkey_depths: List[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
    """Where the key sits in the filler, 0 (start) to 1 (just before the question)."""
    passkey_samples: int = 1
    """Keys per (length, depth) cell."""
    passkey_write_inputs: bool = False
    """Write each case's input_ids into eval/passkey_step_N.jsonl."""
