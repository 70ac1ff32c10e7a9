"""checkpoint's rules: the checkpoint to resume, checked before any worker starts (framework.validate calls them)."""

import os
from typing import Optional

from framework.errors import ConfigError


def check(c):
    for key in ("every", "keep_last"):
        if getattr(c, key) < 0:
            raise ConfigError(f"checkpoint.{key}", getattr(c, key), "must be 0 or more", f"set checkpoint.{key}=0")
    if c.every_minutes < 0:
        raise ConfigError(
            "checkpoint.every_minutes",
            c.every_minutes,
            "must be 0 (no saves by time) or more",
            "set checkpoint.every_minutes=30, say, or 0",
        )
    if c.resume not in (None, "latest") and not os.path.isdir(c.resume):
        raise ConfigError(
            "checkpoint.resume",
            c.resume,
            "no such checkpoint directory (nor run directory)",
            "give a run directory, its checkpoints/ or checkpoints/step_N, or use checkpoint.resume=latest",
        )


def check_resume(c, *, run_dir: str, settings) -> tuple[Optional[str], int, list[str]]:
    """The run directory against checkpoint.resume, and the checkpoint it names: complete (its checksums too, unless
    checkpoint.verify_checksums=false), trusted, saved with the same settings the data order and the LR schedule
    depend on. Returns the checkpoint folder and the step the run resumes from (None, 0: a fresh run) and 'step_N: why'
    for each newer checkpoint skipped."""
    from framework.checkpoint.store import changed_settings, read_manifest, resolve

    if c.resume is None:
        used = [n for n in ("metrics.jsonl", "checkpoints") if os.path.exists(os.path.join(run_dir, n))]
        if used:
            raise ConfigError(
                "checkpoint.resume",
                None,
                f"a fresh run, but {run_dir} already holds a run ({', '.join(used)})",
                "continue it with checkpoint.resume=latest, or start clean in "
                "another directory (hydra.run.dir=...) or after deleting this one",
            )
        return None, 0, []
    if c.resume != "latest" and not c.trust_resume:
        path, own = os.path.realpath(c.resume), os.path.realpath(run_dir)
        if path != own and not path.startswith(own + os.sep):
            raise ConfigError(
                "checkpoint.resume",
                c.resume,
                f"is outside this run directory ({run_dir}), and DeepSpeed "
                "loads checkpoints with torch.load(weights_only=False): a checkpoint someone else "
                "wrote can run code in this job",
                "set checkpoint.trust_resume=true if you trust it (you "
                "wrote it), or resume in its own run directory with checkpoint.resume=latest",
            )
    step_dir, skipped = resolve(c.resume, run_dir, verify=c.verify_checksums)
    why = f" ({'; '.join(skipped)})" if skipped else ""
    if step_dir is None and c.resume == "latest":
        raise ConfigError(
            "checkpoint.resume",
            "latest",
            f"no complete checkpoint in {os.path.join(run_dir, 'checkpoints')}{why}",
            "start a fresh run with checkpoint.resume=null (in a new directory if this one "
            "holds a run), or give a checkpoint path",
        )
    if step_dir is None:
        raise ConfigError(
            "checkpoint.resume",
            c.resume,
            f"is not a complete checkpoint{why}",
            "give a checkpoints/step_N folder that holds manifest.json, or a checkpoints/ folder",
        )
    manifest = read_manifest(step_dir)
    saved = manifest.get("settings", {})
    changed = changed_settings(saved, settings)
    if saved.get("optim.schedule") == settings.get("optim.schedule") == "constant":
        # a constant LR does not depend on max_steps: a finished or stopped run may be extended
        changed = [line for line in changed if not line.startswith("train.max_steps:")]
    if changed and not c.resume_allow_changes:
        raise ConfigError(
            "checkpoint.resume",
            c.resume,
            f"{os.path.basename(step_dir)} was saved with other settings "
            f"that decide the data order or the LR schedule ({'; '.join(changed)})",
            "put them back, or set checkpoint.resume_allow_changes=true to resume anyway (rows may be "
            "skipped or repeated, the LR may jump)",
        )
    return step_dir, int(manifest["step"]), skipped
