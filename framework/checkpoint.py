"""Checkpoints: DeepSpeed ZeRO checkpoints under <run_dir>/checkpoints/step_N, and which one engine.resume names."""
import os
from typing import Optional


def save_checkpoint(ds_engine, run_dir: str, step: int):
    """Save a ZeRO checkpoint under <run_dir>/checkpoints/step_<step>. All ranks must call this. The client state
    records the step and the dtype the model trains in (framework.export casts the fp32 master weights back to it)."""
    dtype = str(next(ds_engine.module.parameters()).dtype)
    ds_engine.save_checkpoint(os.path.join(run_dir, "checkpoints"), tag=f"step_{step}",
                              client_state={"step": step, "dtype": dtype})


def find_checkpoint(resume: Optional[str], run_dir: str) -> Optional[tuple[str, Optional[str]]]:
    """(load_dir, tag) for engine.resume, or None to start fresh."""
    if not resume:
        return None
    if resume == "latest":
        ckpt = os.path.join(run_dir, "checkpoints")
        return (ckpt, None) if os.path.exists(os.path.join(ckpt, "latest")) else None
    path = resume.rstrip("/")
    if os.path.exists(os.path.join(path, "latest")):
        return path, None
    return os.path.dirname(path), os.path.basename(path)


def load_checkpoint(ds_engine, resume: Optional[str], run_dir: str) -> int:
    """Load the checkpoint engine.resume names into the engine; the step it was saved at (0: none, start fresh).
    All ranks must call this."""
    ckpt = find_checkpoint(resume, run_dir)
    if ckpt is None:
        return 0
    _, client = ds_engine.load_checkpoint(ckpt[0], tag=ckpt[1])
    step = int(client["step"])
    if ds_engine.global_rank == 0:
        print(f"resumed from {ckpt[0]} (tag {ckpt[1] or 'latest'}) at step {step}", flush=True)
    return step
