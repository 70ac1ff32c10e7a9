"""train: the step loop (framework.train.trainer.Trainer) that drives the DeepSpeed engine it is given: optimizer
steps, metrics, evaluation and checkpoints at the points their groups ask for."""

from framework.train.config import Device, NonFinite, TrainConfig

__all__ = ["Device", "NonFinite", "TrainConfig"]
