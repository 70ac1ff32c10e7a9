"""eval: held-out evaluation run by the step loop every eval.every steps, sharded like training (SP and ring stay
on, so evaluation fits wherever training fits)."""

from framework.eval.config import EvalConfig

__all__ = ["EvalConfig"]
