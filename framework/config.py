"""The root schema: one field per config group, each typed by the dataclass that lives next to its code
(framework/<group>/config.py).

Registered in Hydra's ConfigStore as `schema`; conf/config.yaml lists it first in its defaults, so every group file,
experiment and override is merged onto typed fields: a typo or a wrong type fails at compose time with the full key.
"""
from dataclasses import dataclass, field

import os

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from framework.attention.config import AttentionConfig
from framework.data.config import DataConfig
from framework.engine.config import EngineConfig
from framework.loss.config import LossConfig
from framework.model.config import ModelConfig
from framework.optim.config import OptimConfig
from framework.parallelism.config import ParallelismConfig
from framework.plan.config import HardwareConfig
from framework.tracker.config import TrackerConfig


@dataclass
class Config:
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    plan: bool = False
    """Predict GPU memory, host RAM, step time and the longest sequence that fits (plan.json), and start nothing."""
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    """What the plan predicts for (0: this machine's); framework/plan/config.py."""


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
