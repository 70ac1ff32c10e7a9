"""How a group's `_target_` is called. The graph builds every group with `hydra.utils.instantiate(cfg.<group>,
*runtime_args, **runtime_objects)`, as torchtune's `config.instantiate(cfg.optimizer, params)` does: Hydra passes the
group's fields as keywords, beside the runtime objects. `@builds(<Group>Config)` gathers those fields back into one
typed config `cfg` for the builder, so a builder reads `cfg.seq_length` and its signature names only the runtime
objects it needs. A leaf: it imports nothing of the project."""

import dataclasses
import functools

from omegaconf import OmegaConf


def builds(schema):
    """Decorate the builder of a group whose fields `schema` (the group's dataclass) declares."""
    names = {f.name for f in dataclasses.fields(schema)} - {"_target_"}

    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, cfg=None, **kwargs):
            if cfg is None:  # called by hydra.utils.instantiate: the fields came as keywords
                fields = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
                cfg = OmegaConf.merge(OmegaConf.structured(schema), fields)
            return fn(*args, cfg=cfg, **kwargs)

        return call

    return wrap


def builder_says(node, attribute: str) -> bool:
    """What an option's builder declares about itself (an attribute set on the builder: `reads_corpus`,
    `token_ids_only`, `uses_wandb`), so code that must know something of an option asks its `_target_` instead of a
    kind string. False when the node names no builder or the builder does not say."""
    from hydra.utils import get_method

    target = node.get("_target_") if hasattr(node, "get") else getattr(node, "_target_", None)
    return bool(target) and bool(getattr(get_method(target), attribute, False))
