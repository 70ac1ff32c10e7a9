"""checkpoint: DeepSpeed ZeRO checkpoints under <run_dir>/checkpoints/step_N, complete or invisible
(framework.checkpoint.store), the resume rules (framework.checkpoint.rules) and the export of the trained model at the
end of a run (framework.export, driven by checkpoint.export / checkpoint.export_merged)."""

from framework.checkpoint.config import CheckpointConfig
from framework.checkpoint.store import (
    MANIFEST,
    changed_settings,
    incomplete_reason,
    is_checkpoints_root,
    load_checkpoint,
    newest_complete,
    prune,
    read_manifest,
    remove_newer,
    resolve,
    run_settings,
    save_checkpoint,
    step_dirs,
    write_manifest,
)

__all__ = [
    "MANIFEST",
    "CheckpointConfig",
    "changed_settings",
    "incomplete_reason",
    "is_checkpoints_root",
    "load_checkpoint",
    "newest_complete",
    "prune",
    "read_manifest",
    "remove_newer",
    "resolve",
    "run_settings",
    "save_checkpoint",
    "step_dirs",
    "write_manifest",
]
