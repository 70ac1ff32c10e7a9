"""plan's rules, checked last before any worker starts (framework.validate calls them, after framework.resolve has
replaced the `auto` switches): a job whose host-RAM plan exceeds the node's RAM is refused (it would take the machine
down); one past GPU memory only warns (the startup line)."""

from framework.errors import ConfigError
from framework.plan.planner import AUTO_FEATURES, make_plan


def check_switches(m):
    """model.recompute_attention / tiled_mlp / offload_activations: true, false or auto."""
    for name in AUTO_FEATURES:
        value = m.get(name)
        if not isinstance(value, bool) and value != "auto":
            raise ConfigError(
                f"model.{name}",
                value,
                "must be true, false or auto",
                f"e.g. model.{name}=auto (the plan picks the faster setup that fits)",
            )


def check(cfg, *, text_config, world: int, on_gpu: bool, planning: bool, unresolved=None):
    """For a job that will run on GPUs, refuse one whose host RAM plan exceeds the node's RAM. Returns the plan (None
    for a job on CPU processes with nothing offloaded). `unresolved`: which switches the user left `auto`
    (framework.resolve.unresolved, taken before the resolve step): max_seq_length's search keeps them free."""
    e = cfg.engine
    if not (on_gpu or planning or e.offload_optimizer or e.offload_params):
        return None
    plan = make_plan(cfg, text_config, world, search=planning, unresolved=unresolved)
    f, hw = plan.figures, plan.hardware
    if not planning and f["host_ram_gib"] > hw.host_ram_gib:
        raise ConfigError(
            "data.seq_length",
            cfg.data.seq_length,
            f"the host RAM plan is {f['host_ram_gib']:.0f} GiB per node, more than its "
            f"{hw.host_ram_gib:.0f} GiB (offloaded optimizer states, pinned buffers, checkpoints); "
            "the job would take the machine down",
            "lower data.seq_length, raise parallelism.sp_size over more nodes, keep more layers on the "
            "GPUs (model.offload_keep_layers), or turn an offload off (python -m framework ... plan=true "
            "shows the parts)",
        )
    return plan
