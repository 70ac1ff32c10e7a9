"""engine's cross-field rules, checked before any worker starts (framework.validate calls them in order)."""
import os

import torch

from framework.errors import ConfigError
from framework.runtime import device_type


def check(e, *, grad_clip: float, device: str = None):
    """ZeRO stage and offload combinations, the step counters, the device, and the checkpoint to resume (`device`:
    what the job runs on, engine.device unless planning for GPUs)."""
    device = e.device if device is None else device
    if e.zero_stage not in (0, 1, 2, 3):
        raise ConfigError("engine.zero_stage", e.zero_stage, "must be 0, 1, 2 or 3", "set engine.zero_stage=3")
    if e.offload_params and e.zero_stage != 3:
        raise ConfigError("engine.offload_params", True, "parameter offload needs ZeRO stage 3",
                          "set engine.zero_stage=3")
    if e.offload_optimizer and e.zero_stage == 0:
        raise ConfigError("engine.offload_optimizer", True, "optimizer offload needs ZeRO stage 1, 2 or 3",
                          "set engine.zero_stage=3")
    if e.super_offload and not (e.offload_optimizer and e.zero_stage == 3):
        raise ConfigError("engine.super_offload", True, "SuperOffload is a mode of ZeRO-3's CPU optimizer offload",
                          "also set engine.offload_optimizer=true engine.zero_stage=3")
    if e.super_offload and device_type(device) != "cuda":
        raise ConfigError("engine.super_offload", True, "DeepSpeed's SuperOffload runs only on NVIDIA GPUs",
                          "set engine.super_offload=false on this machine")
    if e.super_offload and grad_clip > 0:
        raise ConfigError("engine.super_offload", True, f"overlaps the CPU Adam step with backward only without "
                          f"gradient clipping (optim.grad_clip={grad_clip}); with clipping DeepSpeed 0.19 "
                          "steps after backward, as plain optimizer offload does",
                          "set optim.grad_clip=0 to overlap, or engine.super_offload=false to keep clipping")
    for key in ("max_steps", "micro_batch_size", "gradient_accumulation_steps", "eval_steps", "timeout_minutes"):
        if getattr(e, key) < 1:
            raise ConfigError(f"engine.{key}", getattr(e, key), "must be at least 1", f"set engine.{key}=1")
    for key in ("save_every", "eval_every", "keep_last", "seed"):  # -1 used to mean "every step" for save_every
        if getattr(e, key) < 0:
            raise ConfigError(f"engine.{key}", getattr(e, key), "must be 0 or more", f"set engine.{key}=0")
    if not 0 < e.offload_ratio <= 1:
        raise ConfigError("engine.offload_ratio", e.offload_ratio, "is the share of optimizer states stepped on the "
                          "CPU: more than 0, at most 1", "set engine.offload_ratio=1")
    if e.device == "cuda" and device == e.device and not torch.cuda.is_available():
        raise ConfigError("engine.device", str(e.device), "no CUDA device is visible", "set engine.device=auto")
    if e.resume not in (None, "latest") and not os.path.isdir(e.resume):
        raise ConfigError("engine.resume", e.resume, "no such checkpoint directory",
                          "give a checkpoints/ directory or checkpoints/step_N, or use engine.resume=latest")


def check_resume(e, *, run_dir: str, settings) -> tuple[int, list[str]]:
    """The run directory against engine.resume, and the checkpoint it names: complete, trusted, saved with the same
    settings the data order and the LR schedule depend on. Returns the step the run resumes from (0: a fresh run) and
    'step_N: why' for each newer checkpoint skipped."""
    from framework.checkpoint import changed_settings, read_manifest, resolve

    if e.resume is None:
        used = [n for n in ("metrics.jsonl", "checkpoints") if os.path.exists(os.path.join(run_dir, n))]
        if used:
            raise ConfigError("engine.resume", None, f"a fresh run, but {run_dir} already holds a run "
                              f"({', '.join(used)})", "continue it with engine.resume=latest, or start clean in "
                              "another directory (hydra.run.dir=...) or after deleting this one")
        return 0, []
    if e.resume != "latest" and not e.trust_resume:
        path, own = os.path.realpath(e.resume), os.path.realpath(run_dir)
        if not path.startswith(own + os.sep):
            raise ConfigError("engine.resume", e.resume, f"is outside this run directory ({run_dir}), and DeepSpeed "
                              "loads checkpoints with torch.load(weights_only=False): a checkpoint someone else "
                              "wrote can run code in this job", "set engine.trust_resume=true if you trust it (you "
                              "wrote it), or resume in its own run directory with engine.resume=latest")
    step_dir, skipped = resolve(e.resume, run_dir)
    why = f" ({'; '.join(skipped)})" if skipped else ""
    if step_dir is None and e.resume == "latest":
        raise ConfigError("engine.resume", "latest", f"no complete checkpoint in {os.path.join(run_dir, 'checkpoints')}"
                          f"{why}", "start a fresh run with engine.resume=null (in a new directory if this one "
                          "holds a run), or give a checkpoint path")
    if step_dir is None:
        raise ConfigError("engine.resume", e.resume, f"is not a complete checkpoint{why}",
                          "give a checkpoints/step_N folder that holds manifest.json, or a checkpoints/ folder")
    manifest = read_manifest(step_dir)
    changed = changed_settings(manifest.get("settings", {}), settings)
    if changed and not e.resume_allow_changes:
        raise ConfigError("engine.resume", e.resume, f"{os.path.basename(step_dir)} was saved with other settings "
                          f"that decide the data order or the LR schedule ({'; '.join(changed)})",
                          "put them back, or set engine.resume_allow_changes=true to resume anyway (rows may be "
                          "skipped or repeated, the LR may jump)")
    return int(manifest["step"]), skipped
