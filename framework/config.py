"""The root schema: one field per config group, each typed by the dataclass that lives next to its code
(framework/<group>/config.py).

Registered in Hydra's ConfigStore as `schema`; conf/config.yaml lists it first in its defaults, so every group file,
experiment and override is merged onto typed fields: a typo or a wrong type fails at compose time with the full key.
"""

from dataclasses import dataclass, field
from typing import Optional

import os

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from framework.attention.config import AttentionConfig
from framework.checkpoint.config import CheckpointConfig
from framework.data.config import DataConfig
from framework.engine.config import EngineConfig
from framework.eval.config import EvalConfig
from framework.loss.config import LossConfig
from framework.model.config import ModelConfig
from framework.optim.config import OptimConfig
from framework.parallelism.config import ParallelismConfig
from framework.plan.config import HardwareConfig
from framework.tracker.config import TrackerConfig
from framework.train.config import TrainConfig


@dataclass
class Config:
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    plan: bool = False
    """Predict GPU memory, host RAM, step time and the longest sequence that fits (plan.json), and start nothing."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """What the plan predicts for (0: this machine's); framework/plan/config.py."""


MOVED = {
    f"engine.{old}": new
    for old, new in {
        "max_steps": "train.max_steps",
        "seed": "train.seed",
        "micro_batch_size": "train.micro_batch_size",
        "gradient_accumulation_steps": "train.gradient_accumulation_steps",
        "device": "train.device",
        "on_nonfinite": "train.on_nonfinite",
        "dump_grads": "train.dump_grads",
        "save_every": "checkpoint.every",
        "keep_last": "checkpoint.keep_last",
        "resume": "checkpoint.resume",
        "resume_allow_changes": "checkpoint.resume_allow_changes",
        "trust_resume": "checkpoint.trust_resume",
        "save_on_interrupt": "checkpoint.save_on_interrupt",
        "export": "checkpoint.export",
        "export_merged": "checkpoint.export_merged",
        "eval_every": "eval.every",
        "eval_steps": "eval.steps",
        "peak_tflops_per_gpu": "hardware.peak_tflops",
    }.items()
}
"""Keys that moved out of `engine` (2026-12-03: the step loop, checkpoints and evaluation got groups of their own);
the command line names the new key when an old one is given."""


def moved_key(argv) -> Optional[tuple]:
    """(old, new) for the first command-line override that names a moved key, else None."""
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in MOVED:
            return key, MOVED[key]
    return None


def schema_keys(schema=None, prefix: str = "") -> dict:
    """Every key of the schema, dotted ('engine.zero_stage', 'model.lora.r'), mapped to its dataclass field's type
    (a nested dataclass for a group or a sub-group)."""
    import dataclasses
    import typing

    out = {}
    hints = typing.get_type_hints(schema or Config)
    for f in dataclasses.fields(schema or Config):
        if f.name.startswith("_"):
            continue
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind
        out[prefix + f.name] = kind
        if dataclasses.is_dataclass(kind):
            out.update(schema_keys(kind, f"{prefix}{f.name}."))
    return out


def nearest(key: str, leaves) -> Optional[str]:
    """The valid key nearest to `key`: by its last part among its group's keys (moved ones included, named by their
    new key), else among every group's."""
    import difflib

    group, _, last = key.rpartition(".")
    for pool, cutoff in (([k for k in leaves if k.rpartition(".")[0] == group], 0.6), (leaves, 0.8)):
        parts = {k.rpartition(".")[2]: k for k in pool}
        match = difflib.get_close_matches(last, list(parts), n=1, cutoff=cutoff)
        if match:
            return MOVED.get(parts[match[0]], parts[match[0]])
    return None


def check_known_keys(cfg):
    """Refuse a key the schema does not have. Struct mode stops a typo at compose time, but a `+` override adds the
    key anyway (`+checkpoint.evry=1` would train without saving): named here with the nearest valid key."""
    import dataclasses

    from omegaconf import DictConfig

    from framework.errors import ConfigError

    known = schema_keys()
    leaves = [k for k, kind in known.items() if not dataclasses.is_dataclass(kind)] + list(MOVED)

    def walk(node, prefix):
        for key in node.keys():
            full = f"{prefix}{key}"
            if full == "hydra" or str(key).startswith("_"):  # _target_ and the like: hydra's own
                continue
            if full not in known:
                near = nearest(full, leaves)
                group = [k for k in known if prefix and k.startswith(prefix) and "." not in k[len(prefix) :]]
                fix = (
                    f"did you mean {near}? Write {near}=..."
                    if near
                    else f"remove it (the keys here: {', '.join(k[len(prefix) :] for k in group)})"
                    if group
                    else "remove it"
                )
                raise ConfigError(
                    full,
                    node._get_node(key)._value(),
                    "is not a key of the config (a + override added it; nothing reads it)",
                    fix,
                )
            if dataclasses.is_dataclass(known[full]) and isinstance(node._get_node(key), DictConfig):
                walk(node._get_node(key), f"{full}.")

    walk(cfg, "")


REQUIRED = "must be given: this config has no default for it"


def required(*_):
    """`${required:}`: a value the user must give on the command line (a recipe's model directory, its corpus).
    Merged values replace it; read unreplaced, it fails, and validation names the key."""
    raise ValueError(REQUIRED)


def register():
    ConfigStore.instance().store(name="schema", node=Config)
    OmegaConf.register_new_resolver("required", required, replace=True)
    # ${pid:}, the launching process's id: conf/config.yaml's default run directory is unique per launch
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    # ${plan_subdir:${plan}}: plan=true's run directories sit under outputs/plans/, apart from the runs
    OmegaConf.register_new_resolver("plan_subdir", lambda plan: "plans/" if plan else "", replace=True)
    # ${framework_help:part}: a part of the --help page (conf/hydra/help/framework.yaml)
    OmegaConf.register_new_resolver(
        "framework_help", lambda part: __import__("framework.help").help.help_part(part), replace=True
    )
