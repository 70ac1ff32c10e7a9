"""sweep: what a Hydra multirun leaves at its root (summary.csv: framework.sweep.summary; summary.png:
framework.sweep.plot; with tracker=wandb the sweep's W&B run: framework.sweep.wandb), the exit status that tells
whether every job trained (framework.sweep.callback), and `python -m framework.sweep summarize <dir>`."""

from framework.sweep.callback import SummaryCallback, exit_code, set_verdict, summarize_interrupted, write_summary

__all__ = ["SummaryCallback", "exit_code", "set_verdict", "summarize_interrupted", "write_summary"]
