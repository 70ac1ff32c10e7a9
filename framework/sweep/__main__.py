"""`python -m framework.sweep summarize <sweep dir>`: rebuild the summary of any sweep directory (summary.csv,
summary.png and, when the sweep ran with tracker=wandb, one more W&B summary run) from what its jobs left on disk:
a sweep whose launcher ran its jobs elsewhere, one stopped by the machine, or one summarized by an older version."""

import argparse
import os
import sys

from framework.log import get_logger

log = get_logger(__name__)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framework.sweep")
    commands = parser.add_subparsers(dest="command", required=True)
    summarize = commands.add_parser("summarize", help="rebuild summary.csv / summary.png of a sweep directory")
    summarize.add_argument("sweep_dir", help="the sweep's root (hydra.sweep.dir): it holds one directory per job")
    summarize.add_argument(
        "--no-wandb", action="store_true", help="no W&B summary run, even when the sweep ran with tracker=wandb"
    )
    args = parser.parse_args(argv)

    from framework.sweep.callback import write_summary
    from framework.sweep.summary import job_dirs

    if not os.path.isdir(args.sweep_dir) or not job_dirs(args.sweep_dir):
        log.error(
            f"sweep: {args.sweep_dir} holds no job directory (a job has .hydra/overrides.yaml or result.json); "
            f"give the sweep's root (hydra.sweep.dir)"
        )
        return 2
    tracker = None
    config = os.path.join(args.sweep_dir, "multirun.yaml")
    if not args.no_wandb and os.path.exists(config):
        from omegaconf import OmegaConf

        tracker = OmegaConf.select(OmegaConf.load(config), "tracker", default=None)
    return 0 if write_summary(args.sweep_dir, tracker) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
