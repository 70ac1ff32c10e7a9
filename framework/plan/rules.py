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
    """Refuse a job whose host RAM plan exceeds the node's RAM (on CPU processes, whose whole memory is host memory:
    check_cpu_memory). Returns the plan (None
    for a job on CPU processes with nothing offloaded). `unresolved`: which switches the user left `auto`
    (framework.resolve.unresolved, taken before the resolve step): max_seq_length's search keeps them free."""
    e = cfg.engine
    if not (on_gpu or planning or e.offload_optimizer or e.offload_params):
        check_cpu_memory(cfg, text_config=text_config, world=world, unresolved=unresolved)
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
    if not (on_gpu or planning):
        check_cpu_memory(cfg, text_config=text_config, world=world, unresolved=unresolved)
    return plan


CPU_PROCESS_GIB = 1.0
"""Host memory of one CPU worker before its model and batch: torch, transformers and DeepSpeed imported (0.4 GiB
resident measured on smoke_cpu, 2026-12-03, taken as 1). The host plan's per-process figure is a GPU worker's (CUDA
context, pinned pools) and would refuse ordinary CPU jobs of 8 processes."""


def check_cpu_memory(cfg, *, text_config, world: int, unresolved=None):
    """CPU processes hold in host memory what a GPU would hold: each rank's share (the plan's GPU peak, read as host
    bytes) and the process itself, besides what the host plan offloads. Refuse a job that cannot fit this node's RAM
    before any worker starts (a 1T-token row used to reach the workers and end `failed`)."""
    plan = make_plan(cfg, text_config, world, unresolved=unresolved)
    f, hw = plan.figures, plan.hardware
    offloaded = plan.record()["host_parts"]
    offloaded = offloaded.get("total", 0.0) - offloaded.get("processes", 0.0)
    per_rank = f["gpu_peak_gib"] + CPU_PROCESS_GIB
    need = per_rank * hw.ranks_per_node + offloaded
    if need > hw.host_ram_gib:
        raise ConfigError(
            "data.seq_length",
            cfg.data.seq_length,
            f"on CPU processes the job needs about {need:,.0f} GiB of host memory ({hw.ranks_per_node} ranks x "
            f"{per_rank:,.1f} GiB of process, activations and states, plus {offloaded:,.0f} GiB offloaded), more "
            f"than this node's {hw.host_ram_gib:,.0f} GiB",
            "lower data.seq_length, or run on GPUs (python -m framework ... plan=true shows the parts)",
        )
