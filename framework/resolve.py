"""The resolve step: every `auto` of the config replaced by its value, once, in the launching process, after the rules
have checked the config and before config.yaml is written; the workers and config.yaml see plain values.

- model.recompute_attention / tiled_mlp / offload_activations = auto: the plan's fastest setup that fits (on CPU
  processes, their defaults) -- framework.plan.planner.choose_auto.
- model.offload_keep_layers = auto: the fewest layers whose checkpoints stay on the GPUs for the host RAM plan to fit
  the node -- framework.plan.memory.keep_layers.
"""

from typing import Any, Dict

from omegaconf import OmegaConf


def resolve(cfg, *, text_config, world: int, on_gpu: bool) -> Dict[str, Any]:
    """Replace every `auto` in `cfg` (in place, lifting Hydra's read-only flag for the edit). Returns
    {key: value} of what was resolved."""
    from framework.plan.memory import keep_layers
    from framework.plan.planner import choose_auto

    resolved = {f"model.{k}": v for k, v in choose_auto(cfg, text_config, world, on_gpu=on_gpu).items()}
    write(cfg, resolved)
    if cfg.model.get("offload_keep_layers") == "auto":
        resolved["model.offload_keep_layers"] = keep_layers(cfg, world, text_config)
        write(cfg, {"model.offload_keep_layers": resolved["model.offload_keep_layers"]})
    return resolved


def unresolved(cfg) -> Dict[str, bool]:
    """{name: left auto} of the model's auto switches and offload_keep_layers, read before `resolve` (the planner's
    max_seq_length search keeps free what the user left free)."""
    from framework.plan.planner import auto_switches

    return {**auto_switches(cfg), "offload_keep_layers": cfg.model.get("offload_keep_layers") == "auto"}


def write(cfg, values: Dict[str, Any]):
    readonly = OmegaConf.is_readonly(cfg)
    OmegaConf.set_readonly(cfg, False)
    try:
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
    finally:
        OmegaConf.set_readonly(cfg, readonly)
