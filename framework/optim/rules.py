"""optim's rules, checked before any worker starts (framework.validate calls them in order)."""

from framework.errors import ConfigError


def check(o):
    """The ranges of the learning rate, the warmup and the clipping norm."""
    for key in ("lr", "warmup_steps", "grad_clip", "weight_decay"):
        if getattr(o, key) < 0:
            raise ConfigError(
                f"optim.{key}",
                getattr(o, key),
                "must be 0 or more",
                "set optim.lr=1e-5" if key == "lr" else f"set optim.{key}=0",
            )
    if not 0 <= o.min_lr_ratio <= 1:
        raise ConfigError(
            "optim.min_lr_ratio",
            o.min_lr_ratio,
            "is the final LR's share of optim.lr: from 0 to 1",
            "set optim.min_lr_ratio=0.1",
        )
