"""The planner: GPU memory, host RAM and step time of a job before it starts, whether it fits this (or the given)
hardware and what runs out first, the longest data.seq_length that fits, and the `auto` memory features (the
fastest setup that fits). `plan=true` prints it and writes <run dir>/plan.json; a normal run prints its one line.

The terms: framework.plan.gpu (GPU memory, step time) and framework.plan.memory (host RAM)."""

import dataclasses
import os
from dataclasses import dataclass
from itertools import product
from typing import Any, Dict, List, Optional, Tuple


from framework.files import write_json_atomic
from framework.parallelism.config import row_pieces
from framework.plan.gpu import (
    CONTEXT_GIB,
    FRAGMENTATION,
    GIB,
    Setup,
    eval_time,
    gpu_peak,
    passkey_lengths,
    step_time,
)
from framework.plan.memory import HOST_BUDGET, host_plan, host_ram_gib, node_ranks, trainable_params
from framework.tracker.flops import head_dim, matmul_params, mlp_shape, peak_for_name

AUTO_FEATURES = ("recompute_attention", "tiled_mlp", "offload_activations")
"""model.* switches that accept `auto`: the planner picks, once in the launching process."""
DEFAULTS = {"recompute_attention": True, "tiled_mlp": False, "offload_activations": False}
"""What `auto` means where there is nothing to plan for (a job on CPU processes): the switches' plain defaults."""
ASSUMED_GPU = ("an 80 GB H100", 79.6, 989.0)
"""What the plan assumes with no GPU here and no hardware.gpu_mem_gib: an H100 80GB HBM3 (81,559 MiB)."""


@dataclass
class Hardware:
    gpu_mem_gib: float
    host_ram_gib: float
    ranks_per_node: int
    peak_tflops: float
    assumed: Optional[str] = None  # what was assumed for the GPU (no GPU here, none given)


def hardware(cfg, world: int) -> Hardware:
    """hardware.* with 0 filled from this machine (the GPU assumed to be an H100 where there is none)."""
    import torch

    hw = cfg.get("hardware") or {}
    gpu, peak, assumed = float(hw.get("gpu_mem_gib", 0) or 0), float(hw.get("peak_tflops", 0) or 0), None
    try:
        props = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    except (AssertionError, RuntimeError):  # a torch without CUDA told otherwise (tests mock the GPU count)
        props = None
    if props is not None:
        gpu, peak = gpu or props.total_memory / GIB, peak or peak_for_name(props.name) or ASSUMED_GPU[2]
    elif not gpu:
        assumed = f"no GPU here and no hardware.gpu_mem_gib: the GPU figures assume {ASSUMED_GPU[0]}"
        gpu = ASSUMED_GPU[1]
    return Hardware(
        gpu_mem_gib=gpu,
        host_ram_gib=host_ram_gib(cfg),
        ranks_per_node=node_ranks(cfg, world),
        peak_tflops=peak or ASSUMED_GPU[2],
        assumed=assumed,
    )


def attention_kernel(cfg) -> str:
    """The attention kernel a run calls (a key of gpu.ATTENTION_TFLOPS): SDPA's default dispatch is cuDNN; the flash
    kernels serve flash_attention_2/3, the ring (parallelism.cp_size > 1: framework/attention/ring.py calls torch's
    flash ops), packed rows (varlen_attn) and the rest."""
    ring = int(cfg.parallelism.get("cp_size", 1) or 1) > 1
    packed = bool(cfg.data.get("packing", False))
    return "cudnn" if str(cfg.attention.implementation) == "sdpa" and not ring and not packed else "flash"


def setup_of(cfg, text_config, world: int, hw: Hardware, **changes) -> Setup:
    """The Setup of a job from its config (`changes`: Setup fields to replace, e.g. seq_length)."""
    c, m, e, t = text_config, cfg.model, cfg.engine, cfg.train
    tied = getattr(c, "tie_word_embeddings", False)
    mm = matmul_params(c)
    inter, mats = mlp_shape(c)
    keep = m.get("offload_keep_layers", "auto")
    ev = cfg.get("eval") or {}
    evaluates = bool(ev.get("every", 0) or ev.get("only", False))
    passkey = ev.get("passkey_lengths", "auto") if evaluates and ev.get("passkey", False) else None
    if passkey is not None:  # the evaluator's spec: `auto` (or null) or a list of token counts
        passkey = "auto" if str(passkey) in ("auto", "None") else tuple(int(n) for n in passkey)
    cp, sp = int(cfg.parallelism.get("cp_size", 1) or 1), cfg.parallelism.sp_size
    u = Setup(
        layers=c.num_hidden_layers,
        hidden=c.hidden_size,
        intermediate=inter,
        heads=c.num_attention_heads,
        kv_heads=c.num_key_value_heads,
        head_dim=head_dim(c),
        vocab=c.vocab_size,
        params=mm + (0 if tied else c.vocab_size * c.hidden_size),
        matmul_params=mm,
        mlp_params=c.num_hidden_layers * mats * c.hidden_size * inter,
        trainable=trainable_params(c, m.get("lora")),
        seq_length=cfg.data.seq_length,
        micro_batch_size=t.micro_batch_size,
        grad_accum=t.gradient_accumulation_steps,
        world=world,
        sp_size=cfg.parallelism.sp_size,
        ranks_per_node=hw.ranks_per_node,
        zero_stage=e.zero_stage,
        offload_optimizer=e.offload_optimizer,
        offload_params=e.offload_params,
        super_offload=e.get("super_offload", False),
        reduce_bucket_size=e.reduce_bucket_size,
        activation_checkpointing=m.activation_checkpointing,
        recompute_attention=m.get("recompute_attention", True) is not False,
        keep_attention_layers=m.get("keep_attention_layers", 0),
        offload_activations=m.offload_activations is True,
        offload_keep_layers=-1 if keep == "auto" else int(keep),
        tiled_mlp=m.tiled_mlp is True,
        tiled_mlp_shards=m.tiled_mlp_shards,
        liger=m.liger,
        loss_tiled=cfg.loss.tiled,
        peak_tflops=hw.peak_tflops,
        attention_kernel=attention_kernel(cfg),
        eval_every=int(ev.get("every", 0) or 0),
        eval_only=bool(ev.get("only", False)),
        eval_steps=int(ev.get("steps", 0)) if evaluates else 0,
        passkey_lengths=passkey,
        passkey_cells=len(ev.get("passkey_depths", ())) * int(ev.get("passkey_samples", 1)),
        pieces=row_pieces(sp, cp),
    )
    return dataclasses.replace(u, **changes)


def host_of(u: Setup, keep: int) -> Dict[str, float]:
    """Host RAM plan of one node (GiB) with `keep` layers' checkpoints on the GPUs."""
    plan = host_plan(
        params=u.params,
        layers=u.layers,
        hidden=u.hidden,
        seq_length=u.seq_length,
        micro_batch_size=u.micro_batch_size,
        world=u.world,
        sp_size=u.sp_size,
        offload_optimizer=u.offload_optimizer and not u.eval_only,  # eval.only: no optimizer
        offload_params=u.offload_params,
        offload_activations=u.offload_activations and u.activation_checkpointing and not u.eval_only,
        keep_layers=keep,
        super_offload=u.super_offload and u.offload_optimizer and u.zero_stage == 3 and not u.eval_only,
        trainable=u.trainable,
    )
    share = u.ranks_per_node / u.world
    return {k: v * share for k, v in plan.items()}


def with_keep(u: Setup, hw: Hardware) -> Setup:
    """model.offload_keep_layers=auto resolved (-1 in the Setup): the fewest layers (at least 1) whose checkpoints
    must stay on the GPUs for the node's plan to fit HOST_BUDGET of its RAM; all of them when none does."""
    if u.offload_keep_layers >= 0:
        return u
    if not (u.offload_activations and u.activation_checkpointing):
        return dataclasses.replace(u, offload_keep_layers=1)
    for keep in range(1, u.layers + 1):
        if host_of(u, keep)["total"] <= HOST_BUDGET * hw.host_ram_gib:
            return dataclasses.replace(u, offload_keep_layers=keep)
    return dataclasses.replace(u, offload_keep_layers=u.layers)


def predict(u: Setup, hw: Hardware) -> Dict[str, Any]:
    """The plan of one Setup (offload_keep_layers resolved): figures, fit, first wall, and the parts."""
    u = with_keep(u, hw)
    gpu, time, host = gpu_peak(u), step_time(u), host_of(u, u.offload_keep_layers)
    gpu_ok = gpu["total"] * FRAGMENTATION + CONTEXT_GIB <= hw.gpu_mem_gib
    host_ok = host["total"] <= hw.host_ram_gib
    walls = {
        "gpu_memory": gpu["total"] * FRAGMENTATION / max(hw.gpu_mem_gib - CONTEXT_GIB, 1e-9),
        "host_ram": host["total"] / hw.host_ram_gib,
    }
    first = None if gpu_ok and host_ok else max(walls, key=walls.get)
    dp = max(u.world // u.sp_size, 1)
    tokens = u.seq_length * u.micro_batch_size * u.grad_accum * dp
    if u.eval_only:  # the tokens of the one evaluation
        tokens = u.seq_length * u.micro_batch_size * u.eval_steps * dp + sum(passkey_lengths(u))
    return {
        "fits": gpu_ok and host_ok,
        "gpu_peak_gib": gpu["total"],
        "host_ram_gib": host["total"],
        "step_time_s": time["total"],
        "eval_s": sum(eval_time(u).values()) if u.eval_steps else 0.0,
        "eval_only": u.eval_only,
        "first_wall": first,
        "tokens_per_s": tokens / time["total"],
        "offload_keep_layers": u.offload_keep_layers,
        "gpu_parts": gpu,
        "time_parts": time,
        "host_parts": host,
    }


def candidates(u: Setup, auto: Dict[str, bool], attention: str) -> List[Setup]:
    """Every Setup the `auto` switches allow: recompute_attention=false and offload_activations need activation
    checkpointing, and keeping attention's output needs sdpa (model.rules says why)."""
    choices = []
    for name in AUTO_FEATURES:
        if not auto.get(name):
            choices.append([getattr(u, name)])
        elif name in ("recompute_attention", "offload_activations") and not u.activation_checkpointing:
            choices.append([DEFAULTS[name]])
        elif name == "recompute_attention" and (attention != "sdpa" or u.keep_attention_layers):
            choices.append([True])
        else:
            choices.append([False, True])
    return [dataclasses.replace(u, **dict(zip(AUTO_FEATURES, combo))) for combo in product(*choices)]


def best(options: List[Setup], hw: Hardware):
    """The fastest option that fits, else the one that comes closest (lowest GPU peak)."""
    plans = [(predict(o, hw), o) for o in options]
    fitting = [p for p in plans if p[0]["fits"]]
    if fitting:
        return min(fitting, key=lambda p: p[0]["step_time_s"])
    return min(plans, key=lambda p: (p[0]["host_ram_gib"] > hw.host_ram_gib, p[0]["gpu_peak_gib"]))


def auto_switches(cfg) -> Dict[str, bool]:
    return {name: cfg.model.get(name) == "auto" for name in AUTO_FEATURES}


def max_seq_length(
    u: Setup, hw: Hardware, auto: Dict[str, bool], attention: str, limit: int = 1 << 27
) -> Tuple[int, Optional[Dict[str, Any]]]:
    """The longest data.seq_length (a multiple of sp_size x 1024, so every rank's shard is even) at which some
    setup the config allows fits (each `auto` switch free, offload_keep_layers=auto resolved at each length), and
    that setup: for each setup, grow x2 from 1024 x sp_size until it does not fit, then bisect; the longest wins.
    (0, None): none fits."""
    g = 1024 * u.sp_size
    best_n, best_setup = 0, None
    for option in candidates(u, auto, attention):

        def fits(n, o=option):
            return predict(dataclasses.replace(o, seq_length=n), hw)["fits"]

        if not fits(max(g, best_n)):  # this setup cannot beat the best so far
            continue
        good, bad = max(g, best_n), None
        while bad is None and good < limit:
            nxt = min(good * 2, limit)
            good, bad = (nxt, None) if fits(nxt) else (good, nxt)
        while bad is not None and bad - good > g:
            mid = good + (bad - good) // (2 * g) * g
            good, bad = (mid, bad) if fits(mid) else (good, mid)
        if good > best_n or best_setup is None:
            best_n, best_setup = good, option
    if best_setup is None:
        return 0, None
    at = with_keep(dataclasses.replace(best_setup, seq_length=best_n), hw)
    return best_n, {**{k: getattr(at, k) for k in AUTO_FEATURES}, "offload_keep_layers": at.offload_keep_layers}


@dataclass
class Plan:
    """What the planner says about one job."""

    figures: Dict[str, Any]
    hardware: Hardware
    chosen: Dict[str, Any]  # the `auto` switches resolved (empty when none was auto)
    max_seq_length: Optional[int] = None
    max_seq_length_setup: Optional[Dict[str, Any]] = None  # the switches that reach it (offload_keep_layers too)

    def record(self) -> Dict[str, Any]:
        """plan.json: the six keys readers rely on first (fits, gpu_peak_gib, host_ram_gib, step_time_s, first_wall,
        max_seq_length), then the parts and what was assumed. `eval_s`: one evaluation's seconds (0: none); with
        eval.only, step_time_s is that evaluation."""
        f = self.figures
        out = {
            "fits": f["fits"],
            "gpu_peak_gib": round(f["gpu_peak_gib"], 2),
            "host_ram_gib": round(f["host_ram_gib"], 2),
            "step_time_s": round(f["step_time_s"], 3),
            "first_wall": f["first_wall"],
            "max_seq_length": self.max_seq_length,
            "max_seq_length_setup": self.max_seq_length_setup,
            "tokens_per_s": round(f["tokens_per_s"], 1),
            "eval_s": round(f["eval_s"], 3),
            "offload_keep_layers": f["offload_keep_layers"],
            "chosen": self.chosen,
            "hardware": dataclasses.asdict(self.hardware),
        }
        for key in ("gpu_parts", "time_parts", "host_parts"):
            out[key] = {k: round(v, 3) for k, v in f[key].items()}
        return out

    def line(self) -> str:
        """One line for the start of a run."""
        f, hw = self.figures, self.hardware
        line = (
            f"plan: GPU peak about {f['gpu_peak_gib']:.1f} GiB allocated of {hw.gpu_mem_gib:.0f} per GPU, host "
            f"about {f['host_ram_gib']:.0f} of {hw.host_ram_gib:.0f} GiB per node, a step about "
            f"{f['step_time_s']:.1f} s ({f['tokens_per_s']:,.0f} tokens/s)"
        )
        if f["eval_only"]:
            line = line.replace("a step about", "the evaluation about")
        elif f["eval_s"]:
            line += f", an evaluation about {f['eval_s']:.1f} s"
        if self.chosen:
            line += "; auto chose " + " ".join(f"model.{k}={str(v).lower()}" for k, v in self.chosen.items())
        if f["first_wall"] == "gpu_memory":
            line += (
                " -- warning: this is likely to run out of GPU memory (with the allocator's fragmentation); "
                "turn on model.tiled_mlp / model.offload_activations / loss.tiled, lower data.seq_length, or "
                "raise parallelism.sp_size"
            )
        if hw.assumed:
            line += f" ({hw.assumed})"
        return line

    def table(self) -> str:
        """The printout of plan=true: the six figures, then each part."""
        rec = self.record()
        rows = [
            (k, rec[k])
            for k in (
                "fits",
                "gpu_peak_gib",
                "host_ram_gib",
                "step_time_s",
                "first_wall",
                "max_seq_length",
                "tokens_per_s",
                "eval_s",
                "offload_keep_layers",
            )
        ]
        rows += [(f"  gpu {k} GiB", v) for k, v in rec["gpu_parts"].items() if k != "total"]
        rows += [(f"  host {k} GiB", v) for k, v in rec["host_parts"].items() if k != "total"]
        rows += [(f"  time {k} s", v) for k, v in rec["time_parts"].items() if k != "total"]
        rows += [(f"  auto model.{k}", v) for k, v in self.chosen.items()]
        if self.max_seq_length_setup:
            rows += [
                (
                    "max_seq_length with",
                    " ".join(f"model.{k}={str(v).lower()}" for k, v in self.max_seq_length_setup.items()),
                )
            ]
        text = "\n".join(f"{k:<34} {v}" for k, v in rows)
        return text + (f"\nnote: {self.hardware.assumed}" if self.hardware.assumed else "")


def make_plan(
    cfg,
    text_config,
    world: int,
    *,
    search: bool = False,
    first_step: bool = False,
    unresolved: Optional[Dict[str, bool]] = None,
) -> Plan:
    """The plan of `cfg` (its `auto` switches still unresolved or already resolved); `search`: also search
    max_seq_length over every setup the config allows (a few hundred predictions, well under a second);
    `first_step`: step 1's peak (no Adam moments yet), to compare with runs that recorded only step 1; `unresolved`:
    {key: left auto} of the config before the resolve step wrote its choices in (framework.resolve.unresolved), so
    the search stays free where the user left it free; by default the config's own."""
    hw = hardware(cfg, world)
    unresolved = unresolved or {}
    keep_auto = {"offload_keep_layers": -1} if unresolved.get("offload_keep_layers") else {}
    u = setup_of(cfg, text_config, world, hw, first_step=first_step, **keep_auto)
    auto = auto_switches(cfg)
    auto = {k: auto[k] or bool(unresolved.get(k)) for k in auto}
    attention = str(cfg.attention.implementation)
    figures, chosen_setup = best(candidates(u, auto, attention), hw)
    chosen = {k: getattr(chosen_setup, k) for k in AUTO_FEATURES if auto[k]}
    longest, setup = max_seq_length(u, hw, auto, attention) if search else (None, None)
    return Plan(figures=figures, hardware=hw, chosen=chosen, max_seq_length=longest, max_seq_length_setup=setup)


def write(plan: Plan, run_dir: str):
    write_json_atomic(os.path.join(run_dir, "plan.json"), plan.record())


def choose_auto(cfg, text_config, world: int, *, on_gpu: bool) -> Dict[str, Any]:
    """The value of each `auto` switch of cfg.model: the plan's choice (the fastest setup that fits); on CPU processes
    its default. Pure: framework.resolve writes them into the config."""
    auto = auto_switches(cfg)
    if not any(auto.values()):
        return {}
    if on_gpu:
        return dict(make_plan(cfg, text_config, world).chosen)
    return {k: DEFAULTS[k] for k in AUTO_FEATURES if auto[k]}
