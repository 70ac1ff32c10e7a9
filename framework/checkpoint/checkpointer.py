"""The checkpoint group built (`_target_`): when the step loop saves, what it keeps, what a run resumes from."""
from typing import Any, Dict, Optional

from framework.checkpoint.store import load_checkpoint, save_checkpoint


class Checkpointer:
    """Saves ZeRO checkpoints every `every` steps and at the last one, keeps `keep_last`, and loads `resume`.
    Built by hydra.utils.instantiate(cfg.checkpoint, run_dir=..., settings=...)."""

    def __init__(self, *, run_dir: str, settings: Dict[str, Any], every: int = 0, keep_last: int = 0,
                 resume: Optional[str] = None, save_on_interrupt: bool = False, export: bool = True,
                 export_merged: bool = False, resume_allow_changes: bool = False, trust_resume: bool = False,
                 verify_checksums: bool = True):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(settings, DictConfig):  # hydra's instantiate turns a dict argument into a DictConfig
            settings = OmegaConf.to_container(settings)  # the manifest is JSON
        self.run_dir, self.settings = run_dir, settings  # settings: what the token stream and LR depend on
        self.every, self.keep_last, self.resume = every, keep_last, resume
        self.save_on_interrupt, self.export, self.export_merged = save_on_interrupt, export, export_merged

    def due(self, step: int, max_steps: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == max_steps)

    def save(self, ds_engine, step: int):
        """Save <run_dir>/checkpoints/step_<step>, complete or invisible. All ranks must call this."""
        save_checkpoint(ds_engine, self.run_dir, step, settings=self.settings, keep_last=self.keep_last)

    def load(self, ds_engine) -> int:
        """Load the checkpoint `resume` names; the step it was saved at (0: a fresh run). All ranks must call this."""
        return load_checkpoint(ds_engine, self.resume, self.run_dir)
