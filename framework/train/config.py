"""train's config: the step loop (how many optimizer steps, on what batch, with which seed, on which device, and
what a non-finite step does). The loop itself is framework.train.trainer.Trainer."""

from dataclasses import dataclass

from framework.choice import Choice


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class NonFinite(Choice):
    stop = "stop"
    skip = "skip"


@dataclass
class TrainConfig:
    _target_: str = "framework.train.trainer.Trainer"
    max_steps: int = 10
    """Optimizer steps to run."""
    seed: int = 42
    """Seeds weights (random init), data order and every RNG."""
    micro_batch_size: int = 1
    """Rows per rank per micro-step (before SP sharding: each SP rank holds b x s/sp_size tokens)."""
    gradient_accumulation_steps: int = 1
    """Micro-steps per optimizer step."""
    device: Device = Device.auto
    """auto (cuda when present), cuda or cpu."""
    on_nonfinite: NonFinite = NonFinite.stop
    """A step whose loss or gradient norm is NaN/inf: stop the job naming the step, or skip it (DeepSpeed applies no
    update and the LR schedule does not move; the data moves on). A skip DeepSpeed could not make stops the job."""
    dump_grads: bool = False
    """Debug: write the full fp32 gradients (before clipping) of this run's first optimizer step to
    <run_dir>/grads_step<N>.pt, a dict keyed like the HF model's parameters. For correctness tests."""
