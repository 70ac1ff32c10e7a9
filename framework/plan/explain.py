"""The plan in words, for `plan=true`: an opening sentence (fits or not, the first wall, against which hardware), a
table whose rows say what they are, and the closing line `[ok]` or `[no-fit]` with the fix. The figures are the
planner's (framework.plan.planner.Plan); this module only says them."""

from typing import List, Tuple

WALLS = {"gpu_memory": "GPU memory", "host_ram": "host RAM"}


def hardware_words(plan, *, world: int, seq_length: int) -> str:
    hw = plan.hardware
    gpus = f"{world} GPU{'s' if world != 1 else ''}"
    node = f"{hw.ranks_per_node} per node" if hw.ranks_per_node != world else "on one node"
    gpu = f"{hw.gpu_mem_gib:.1f} GiB each" + (" (assumed: an 80 GB H100, no GPU here)" if hw.assumed else "")
    return (
        f"{gpus} ({node}) of {gpu}, {hw.host_ram_gib:.0f} GiB of host RAM per node, {world} rank"
        f"{'s' if world != 1 else ''}, {seq_length:,} tokens per sequence"
    )


def opening(plan, *, world: int, seq_length: int) -> str:
    """One sentence: does it fit, what runs out first, on which hardware."""
    f = plan.figures
    hw = hardware_words(plan, world=world, seq_length=seq_length)
    if f["fits"]:
        step = "the evaluation" if f.get("eval_only") else "a step"
        return (
            f"This job fits: about {f['gpu_peak_gib']:.1f} GiB per GPU and {f['host_ram_gib']:.0f} GiB of host "
            f"RAM, {step} in about {f['step_time_s']:.1f} s, on {hw}."
        )
    return (
        f"This job does not fit: it runs out of {WALLS.get(f['first_wall'], f['first_wall'])} first "
        f"({usage(plan)}), on {hw}."
    )


def usage(plan) -> str:
    f, hw = plan.figures, plan.hardware
    if f["first_wall"] == "host_ram":
        return f"{f['host_ram_gib']:.0f} GiB of host RAM needed, {hw.host_ram_gib:.0f} GiB per node"
    return f"about {f['gpu_peak_gib']:.1f} GiB needed per GPU, {hw.gpu_mem_gib:.1f} GiB each"


def fix(plan) -> str:
    """What to change so that it fits."""
    f = plan.figures
    longer = plan.max_seq_length
    shorter = f"data.seq_length={longer} (the longest that fits here)" if longer else None
    if f["first_wall"] == "host_ram":
        from framework.plan.memory import HOST_BUDGET

        need = int(f["host_ram_gib"] / HOST_BUDGET) + 1
        steps = [
            f"plan for a cluster whose nodes have more RAM (hardware.host_ram_gib={need})",
            "or fewer ranks per node (hardware.gpus_per_node)",
        ]
    else:
        steps = [
            "raise parallelism.sp_size (more GPUs share each sequence)",
            "turn on model.tiled_mlp / model.offload_activations / loss.tiled",
            "plan for larger GPUs (hardware.gpu_mem_gib=...)",
        ]
    return "; ".join(([f"lower {shorter}"] if shorter else []) + steps)


def rows(plan) -> List[Tuple[str, object]]:
    rec = plan.record()
    longest = rec["max_seq_length"]
    out = [
        ("fits this hardware", "yes" if rec["fits"] else "no"),
        ("runs out of first", WALLS.get(rec["first_wall"], "nothing") if rec["first_wall"] else "nothing"),
        ("GPU memory per GPU, peak (GiB)", rec["gpu_peak_gib"]),
        ("host RAM per node (GiB)", rec["host_ram_gib"]),
        (
            "time of the evaluation (s)" if plan.figures.get("eval_only") else "time per optimizer step (s)",
            rec["step_time_s"],
        ),
        ("tokens per second, whole job", rec["tokens_per_s"]),
        (
            "longest data.seq_length that fits",
            "none: not even the shortest tried (1024 tokens per SP rank) fits" if longest == 0 else longest,
        ),
        ("layers whose checkpoints stay on GPU", rec["offload_keep_layers"]),
    ]
    if rec["eval_s"] and not plan.figures.get("eval_only"):
        out.insert(5, ("time of one evaluation (s)", rec["eval_s"]))
    out += [(f"  GPU: {k} (GiB)", v) for k, v in rec["gpu_parts"].items() if k != "total"]
    out += [(f"  host: {k} (GiB)", v) for k, v in rec["host_parts"].items() if k != "total"]
    out += [(f"  time: {k} (s)", v) for k, v in rec["time_parts"].items() if k != "total"]
    out += [(f"  auto chose model.{k}", v) for k, v in plan.chosen.items()]
    return out


def report(plan, *, world: int, seq_length: int) -> str:
    """What plan=true prints before its closing line."""
    text = [opening(plan, world=world, seq_length=seq_length), ""]
    text += [f"{k:<40} {v}" for k, v in rows(plan)]
    if plan.max_seq_length == 0:
        text.append("(longest data.seq_length 0: no length the search tried fits this hardware; see the fix below)")
    if not plan.figures["fits"]:
        text.append(f"fix: {fix(plan)}")
    if plan.hardware.assumed:
        text.append(f"note: {plan.hardware.assumed}")
    return "\n".join(text)


def verdict(plan, run_dir: str) -> str:
    """The closing line: `[ok] <dir>: fits` or `[no-fit] <dir>: <what runs out> -- <fix>`."""
    if plan.figures["fits"]:
        return f"[ok] {run_dir}: fits ({usage(plan)}; plan.json written)"
    return (
        f"[no-fit] {run_dir}: runs out of {WALLS.get(plan.figures['first_wall'], '?')} ({usage(plan)}); fix: "
        f"{fix(plan)}"
    )
