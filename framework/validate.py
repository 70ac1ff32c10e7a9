"""The validation step: every group's cross-field rules, called in order in the launching process before any worker
starts. The rules live next to the code they protect (framework/<group>/rules.py); this module only orders them and
resolves the model's config once, for the rules and for what runs after them.

Each rule raises ConfigError(key, value, rule, fix); the CLI prints that one message (no traceback) and stops.
"""
from dataclasses import dataclass
from typing import Any

from framework.attention import rules as attention_rules
from framework.data import rules as data_rules
from framework.engine import rules as engine_rules
from framework.errors import ConfigError
from framework.model import rules as model_rules
from framework.parallelism import rules as parallelism_rules
from framework.runtime import world_size


@dataclass
class Validated:
    """What validation found out: the processes the job runs on, and the model's transformers config."""

    world: int
    model_config: Any

    @property
    def text_config(self):
        return self.model_config.get_text_config()


def validate(cfg) -> Validated:
    """Check every rule, in order; the first one broken raises ConfigError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)  # bad interpolations / env values of the wrong type
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "?")
        raise ConfigError(key, getattr(exc, "value", None), " ".join(str(exc).split("\n")[0].split()),
                          "fix the value (or the PARALLELISM_CONFIG_* environment variable it comes from)") from None
    p, m, a, d, e = cfg.parallelism, cfg.model, cfg.attention, cfg.data, cfg.engine
    world = world_size(p, e.device)
    parallelism_rules.check(p, world=world, device=e.device)
    config = model_rules.model_config(m, device=e.device)
    text = config.get_text_config()
    parallelism_rules.check_heads(p, text_config=text)
    attention_rules.check(a, sp_size=p.sp_size, device=e.device)
    model_rules.check_features(m, config=config, device=e.device, attention=str(a.implementation))
    data_rules.check(d, parallelism=p, eval_every=e.eval_every)
    attention_rules.check_packed(a, text_config=text, device=e.device, packing=d.packing,
                                 micro_batch_size=e.micro_batch_size)
    attention_rules.check_ring(a, parallelism=p, text_config=text, packing=d.packing, model=m)
    data_rules.check_corpus(d, parallelism=p, tokenizer_path=m.name_or_path, world=world,
                            micro_batch_size=e.micro_batch_size, seed=e.seed, eval_every=e.eval_every)
    engine_rules.check(e, grad_clip=cfg.optim.grad_clip)
    return Validated(world=world, model_config=config)
