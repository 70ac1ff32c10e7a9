"""The checkpoint group built (`_target_`): when the step loop saves, what it keeps, what a run resumes from."""

import time
from typing import Any, Dict, Optional

from framework.checkpoint.store import load_checkpoint, save_checkpoint


class Checkpointer:
    """Saves ZeRO checkpoints every `every` steps, every `every_minutes` of wall clock, and at the last step, keeps
    `keep_last`, and loads `resume`. Built by hydra.utils.instantiate(cfg.checkpoint, run_dir=..., settings=...)."""

    def __init__(
        self,
        *,
        run_dir: str,
        settings: Dict[str, Any],
        every: int = 0,
        every_minutes: float = 0.0,
        keep_last: int = 0,
        resume: Optional[str] = None,
        save_on_interrupt: bool = False,
        export: bool = True,
        export_merged: bool = False,
        resume_allow_changes: bool = False,
        trust_resume: bool = False,
        verify_checksums: bool = True,
        clock=time.monotonic,
    ):
        self.run_dir, self.settings = run_dir, settings  # settings: what the token stream and LR depend on
        self.every, self.every_minutes, self.keep_last, self.resume = every, every_minutes, keep_last, resume
        self.save_on_interrupt, self.export, self.export_merged = save_on_interrupt, export, export_merged
        self.clock = clock
        self.last_save = clock()  # the run's start counts as a save: the first one by time comes every_minutes later

    def due(self, step: int, max_steps: int) -> bool:
        """A save by step count, or the last step of a run that saves at all."""
        if step == max_steps:
            return bool(self.every or self.every_minutes)
        return bool(self.every) and step % self.every == 0

    def time_due(self) -> bool:
        """checkpoint.every_minutes have passed since the last save, on this rank's clock. Ranks' clocks differ: the
        step loop reduces this over the ranks so that all save, or none."""
        return bool(self.every_minutes) and self.clock() - self.last_save >= 60 * self.every_minutes

    def save(self, ds_engine, step: int):
        """Save <run_dir>/checkpoints/step_<step>, complete or invisible. All ranks must call this."""
        save_checkpoint(ds_engine, self.run_dir, step, settings=self.settings, keep_last=self.keep_last)
        self.last_save = self.clock()

    def load(self, ds_engine) -> int:
        """Load the checkpoint `resume` names; the step it was saved at (0: a fresh run). All ranks must call this."""
        return load_checkpoint(ds_engine, self.resume, self.run_dir)
