"""Runtime helpers every layer needs: where the job runs and on how many processes. A leaf: it imports nothing else
of the project, so any module may import it."""

import os

from framework.env import START_ENV, VALIDATED_ENV  # noqa: F401  (re-exported: the names live in framework.env)


def device_type(device: str = "auto") -> str:
    """`train.device` resolved: auto is cuda when a GPU is visible, else cpu."""
    device = str(device)
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def world_size(parallelism, device: str = "auto") -> int:
    """Processes the job runs on: torchrun/SLURM's WORLD_SIZE if already launched, else what we will start
    (`parallelism.num_processes`, else the product of the sizes; dp_shard_size=-1 fills the visible GPUs)."""
    p = parallelism
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if p.num_processes > 0:
        return p.num_processes
    if p.dp_shard_size == -1:
        import torch

        gpus = torch.cuda.device_count() if device_type(device) == "cuda" else 0
        return max(gpus, p.dp_replicate_size * p.cp_size * p.sp_size)
    return p.dp_replicate_size * p.dp_shard_size * p.cp_size * p.sp_size


def mark_start():
    """Remember when this command's process started (its creation time, so the interpreter's own start and the
    imports count), unless a parent already did."""
    if START_ENV not in os.environ:
        import psutil

        os.environ[START_ENV] = str(psutil.Process().create_time())


def since_start() -> float:
    """Seconds since the command started (since this process started where no command set it)."""
    import time

    if START_ENV not in os.environ:
        mark_start()
    return time.time() - float(os.environ[START_ENV])
