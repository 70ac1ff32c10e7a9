"""eval's rules, checked before any worker starts."""
from framework.errors import ConfigError


def check(ev):
    if ev.steps < 1:
        raise ConfigError("eval.steps", ev.steps, "must be at least 1", "set eval.steps=1")
    if ev.every < 0:
        raise ConfigError("eval.every", ev.every, "must be 0 or more (0: never)", "set eval.every=0")
