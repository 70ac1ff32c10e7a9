"""sweep: what a Hydra multirun leaves at its root (summary.csv, summary.png: framework.sweep.summary) and the exit
status that tells whether every job trained (framework.sweep.callback)."""
from framework.sweep.callback import SummaryCallback, exit_code, set_verdict

__all__ = ["SummaryCallback", "exit_code", "set_verdict"]
