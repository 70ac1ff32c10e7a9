"""checkpoint's config: when to save, what to keep, what to resume from, and what to export at the end."""

from dataclasses import dataclass
from typing import Optional


@dataclass
class CheckpointConfig:
    _target_: str = "framework.checkpoint.checkpointer.Checkpointer"
    every: int = 0
    """Save a checkpoint every N optimizer steps (and at the end); 0: never."""
    every_minutes: float = 0.0
    """Also save once this many minutes of wall clock have passed since the run started or last saved (whichever of
    checkpoint.every and this comes first; at the end too); 0: no saves by time."""
    keep_last: int = 0
    """Complete checkpoints kept; older ones are deleted once a newer one is complete. 0: keep all."""
    resume: Optional[str] = None
    """null (a fresh run: the run directory must hold no earlier run), latest (the newest complete checkpoint of this
    run directory; none is an error), a run directory or its checkpoints/ folder (its newest complete one), or one
    checkpoints/step_N. A path continues in the run directory it belongs to (hydra.run.dir follows it)."""
    resume_allow_changes: bool = False
    """Resume even though a setting the data order or LR schedule depends on (sp_size, seq_length, data, batch,
    seed, max_steps, schedule, ...) differs from the checkpoint's: rows may be skipped or repeated, the LR may jump."""
    verify_checksums: bool = True
    """On resume, read every file of the checkpoint and compare it with the checksum its save recorded (a checkpoint
    that differs is skipped, as a torn one is). Reading costs about a second per 3 GB of checkpoint: false skips it for
    huge checkpoints (sizes are still compared)."""
    trust_resume: bool = False
    """Load a checkpoint.resume outside this run directory. DeepSpeed unpickles checkpoints (torch.load with
    weights_only=False): a file someone else wrote can run code in this job."""
    save_on_interrupt: bool = False
    """On SIGTERM (schedulers send it before the kill), finish the step, save a checkpoint, then stop. The launcher
    gives its workers 30 s after the signal: a step plus a save must fit in it."""
    export: bool = True
    """At the end of a successful run, write the trained model to <run_dir>/model/ as a Hugging Face directory
    (config, safetensors, generation config, tokenizer), or with LoRA the peft adapter."""
    export_merged: bool = False
    """With LoRA: export the base model with the adapter merged into it (a plain Hugging Face model) instead of the
    adapter alone."""
