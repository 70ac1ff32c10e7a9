"""Host-RAM plan of a job, printed before the workers start: the CPU-offloaded state is what runs a long-sequence
job out of host memory (the ALST recipes ran on 1.9 TB hosts; a 256 GiB one meets this wall first)."""

import math
import os
from typing import Dict

import psutil
from omegaconf import OmegaConf

from framework.model.lora import lora_params
from framework.tracker.flops import matmul_params

GIB = 2**30
PROCESS_BASE_GIB = 3.8
"""Host memory of one GPU worker besides the model state (CUDA context, libraries, DeepSpeed ops, staging copies):
the 8B run at 64K on 2 x H100 with plain optimizer offload used 145.4 GiB = 89.8 (optimizer states) + 48 (pinned
buffers) + 7.6 for the two workers (experiments/alst_2gpu, 64k_ours_peer_setup.jsonl)."""
SUPER_OFFLOAD_BYTES_PER_PARAM = 4
SUPER_OFFLOAD_WORKER_GIB = 4.9
"""SuperOffload (engine.super_offload) adds, besides the states above, 4 B per parameter (an fp32 copy its CPU Adam
process holds) and 4.9 GiB per rank (that process): fit on experiments/alst_2gpu (256K, 384K, 64K ALST rows: 233.1,
241.1, 199.7 GiB) and alst_4gpu (512K, 1M: 325.2, 450.4 GiB); each is then within 1.5%."""

HOST_BUDGET = 0.95
"""Share of the host's RAM the plan may fill before the startup line warns. The plan came within 3 GiB of the
measured use on a 252 GiB host (2 x H100, Llama-3.1-8B, 256K: planned 223 and 231 GiB, measured 225 and 233 with
12 and 8 layers kept on the GPUs); both runs trained, the second at 92% of the host's RAM."""


def pinned_round_threshold() -> float:
    """Bytes above which torch's pinned host allocator stops rounding a buffer up to a power of two: the smaller of
    pinned_max_round_threshold_mb and pinned_max_cached_size_mb in PYTORCH_ALLOC_CONF (or PYTORCH_CUDA_ALLOC_CONF),
    where this torch has them (2.13 does); without them it rounds every buffer."""
    conf = os.environ.get("PYTORCH_ALLOC_CONF") or os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or ""
    limits = [
        float(value) * 2**20
        for key, _, value in (item.partition(":") for item in conf.split(","))
        if key.strip() in ("pinned_max_round_threshold_mb", "pinned_max_cached_size_mb")
    ]
    return min(limits, default=math.inf)


def pinned_size(nbytes: int, threshold: float = None) -> int:
    """Host bytes one pinned buffer of `nbytes` takes: torch's caching host allocator rounds it up to a power of two
    (up to the threshold above). A rank's checkpoint at 320K tokens for Llama-8B, 1.25 GiB, takes 2 GiB: 2 x H100
    ran out of host RAM that way, where the plan without rounding said 238 of 252 GiB (experiments/alst_2gpu)."""
    threshold = pinned_round_threshold() if threshold is None else threshold
    return nbytes if nbytes <= 1 or nbytes > threshold else 1 << (nbytes - 1).bit_length()


def checkpoint_bytes(*, seq_length: int, sp_size: int, hidden: int, micro_batch_size: int, act_bytes: int = 2) -> int:
    """One decoder layer's checkpointed hidden states on one rank: its share of the tokens x hidden x 2 B (bf16)."""
    return seq_length // sp_size * hidden * act_bytes * micro_batch_size


def host_plan(
    *,
    params: int,
    layers: int,
    hidden: int,
    seq_length: int,
    micro_batch_size: int,
    world: int,
    sp_size: int,
    offload_optimizer: bool,
    offload_params: bool,
    offload_activations: bool,
    keep_layers: int = 0,
    act_bytes: int = 2,
    round_threshold: float = None,
    super_offload: bool = False,
    trainable: int = None,
) -> Dict[str, float]:
    """GiB of host RAM the job's offloaded state needs on one node holding all `world` ranks.

    optimizer states offloaded: fp32 master weights and Adam's two moments, 12 B per parameter (all ranks together:
    ZeRO partitions them, the node holds every partition), plus each rank's pinned transfer buffers: its fp32
    gradients (4 B) and bf16 parameters (2 B) in flight, each rounded as pinned_size does (measured 24.0 GiB per rank
    for 4.0e9 parameters per rank: 16 + 8, on H100 and H200); SuperOffload adds the constants above. Parameters
    offloaded: 2 B each. Checkpointed hidden states offloaded: one pinned buffer per layer and rank of its tokens x
    hidden x 2 B (bf16), rounded as pinned_size does (`round_threshold`: bytes, the environment's by default), for every
    sequence in flight, one per data-parallel replica: 256 KiB per token for Llama-3.1-8B when a rank's buffer is a
    power of two; the last `keep_layers` layers' stay on the GPU."""
    plan = {"processes": PROCESS_BASE_GIB * world}
    if offload_optimizer:
        owned = (params if trainable is None else trainable) / world  # LoRA: the adapter's parameters only
        plan["optimizer_states"] = 12 * owned * world / GIB
        plan["pinned_buffers"] = (
            world * (pinned_size(int(4 * owned), round_threshold) + pinned_size(int(2 * owned), round_threshold)) / GIB
        )
        if super_offload:
            plan["super_offload"] = (SUPER_OFFLOAD_BYTES_PER_PARAM * owned / GIB + SUPER_OFFLOAD_WORKER_GIB) * world
    if offload_params:
        plan["parameters"] = 2 * params / GIB
    if offload_activations:
        replicas = max(world // sp_size, 1)
        per_rank = pinned_size(
            checkpoint_bytes(
                seq_length=seq_length,
                sp_size=sp_size,
                hidden=hidden,
                micro_batch_size=micro_batch_size,
                act_bytes=act_bytes,
            ),
            round_threshold,
        )
        per_layer = per_rank * sp_size * replicas / GIB
        plan["checkpointed_activations"] = max(layers - keep_layers, 0) * per_layer
    plan["total"] = sum(plan.values())
    return plan


def keep_layers_to_fit(
    plan: Dict[str, float], *, host_gib: float, layers: int, keep_layers: int, budget: float = HOST_BUDGET
) -> int:
    """The smallest model.offload_keep_layers that brings the plan under `budget` x host_gib; 0 if none does (or
    the plan already fits)."""
    over = plan["total"] - budget * host_gib
    offloaded = layers - keep_layers
    if over <= 0 or offloaded <= 0 or "checkpointed_activations" not in plan:
        return 0
    per_layer = plan["checkpointed_activations"] / offloaded
    extra = math.ceil(over / per_layer)
    return keep_layers + extra if extra < offloaded else 0


def host_ram_gib(cfg) -> float:
    """The node's RAM, GiB: hardware.host_ram_gib, else this machine's."""
    given = OmegaConf.select(cfg, "hardware.host_ram_gib", default=0) or 0
    return float(given) if given > 0 else psutil.virtual_memory().total / GIB


def node_ranks(cfg, world: int) -> int:
    """Ranks on one node: hardware.gpus_per_node, else torchrun/SLURM's LOCAL_WORLD_SIZE, else all of them (we
    start the workers ourselves)."""
    given = OmegaConf.select(cfg, "hardware.gpus_per_node", default=0) or 0
    return min(int(given) if given > 0 else int(os.environ.get("LOCAL_WORLD_SIZE", world)), world)


def trainable_params(c, lora) -> int:
    """Parameters with gradients and optimizer states: all of them, or with LoRA (model.lora.r > 0) its adapters'
    (framework.model.lora.lora_params: r x (in + out) on each targeted projection of every layer)."""
    tied = getattr(c, "tie_word_embeddings", False)
    total = matmul_params(c) + (0 if tied else c.vocab_size * c.hidden_size)  # + the embedding table
    if lora is None or int(lora.get("r", 0) or 0) <= 0:
        return total
    return lora_params(c, lora)


def _node_plan(cfg, world: int, keep: int, c) -> Dict[str, float]:
    """The plan of the ranks on one node (`c`: the model's text config, node_ranks of `world`). Every entry is even
    over the ranks."""
    tied = getattr(c, "tie_word_embeddings", False)
    params = matmul_params(c) + (0 if tied else c.vocab_size * c.hidden_size)  # + the embedding table
    plan = host_plan(
        params=params,
        layers=c.num_hidden_layers,
        hidden=c.hidden_size,
        seq_length=cfg.data.seq_length,
        micro_batch_size=cfg.train.micro_batch_size,
        world=world,
        sp_size=cfg.parallelism.sp_size * cfg.parallelism.cp_size,
        offload_optimizer=cfg.engine.offload_optimizer,
        offload_params=cfg.engine.offload_params,
        offload_activations=cfg.model.offload_activations,
        keep_layers=keep,
        super_offload=cfg.engine.get("super_offload", False),
        trainable=trainable_params(c, cfg.model.get("lora")),
    )
    share = node_ranks(cfg, world) / world
    return {k: v * share for k, v in plan.items()}


def keep_layers(cfg, world: int, text_config) -> int:
    """model.offload_keep_layers as a number. `auto`: the fewest layers (at least 1, as DeepSpeed keeps) whose
    checkpoints must stay on the GPUs for the plan to fit HOST_BUDGET of this node's RAM; all of them when even that
    does not fit (the startup line then warns). The same on every rank of a node: it depends on the config, the world
    size and the node's RAM only."""
    keep = cfg.model.get("offload_keep_layers", "auto")
    if keep != "auto":
        return int(keep)
    if not cfg.model.offload_activations:
        return 1
    c = text_config
    plan = _node_plan(cfg, world, 1, c)
    host = host_ram_gib(cfg)
    fit = keep_layers_to_fit(plan, host_gib=host, layers=c.num_hidden_layers, keep_layers=1)
    return fit or (c.num_hidden_layers if plan["total"] > HOST_BUDGET * host else 1)


def describe(cfg, world: int, text_config) -> str:
    """One line: the plan against this machine's RAM, with a warning (and what to change) when it does not fit."""
    c = text_config
    keep = keep_layers(cfg, world, c)
    plan = _node_plan(cfg, world, keep, c)
    total = host_ram_gib(cfg)
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in plan.items() if k != "total")
    line = f"host RAM plan: about {plan['total']:.0f} GiB of the node's {total:.0f} GiB ({parts})"
    layer_gib = (
        checkpoint_bytes(
            seq_length=cfg.data.seq_length,
            sp_size=cfg.parallelism.sp_size * cfg.parallelism.cp_size,
            hidden=c.hidden_size,
            micro_batch_size=cfg.train.micro_batch_size,
        )
        / GIB
    )
    if cfg.model.offload_activations and cfg.model.get("offload_keep_layers", "auto") == "auto":
        line += (
            f"; model.offload_keep_layers=auto keeps {keep} of {c.num_hidden_layers} layers' checkpoints on the "
            f"GPUs ({keep * layer_gib:.1f} GiB on each)"
        )
    if plan["total"] > HOST_BUDGET * total:
        line += " -- warning: this is likely to run out of host memory; "
        fit = keep_layers_to_fit(plan, host_gib=total, layers=c.num_hidden_layers, keep_layers=keep)
        if fit:
            line += (
                f"model.offload_keep_layers={fit} would fit (it keeps {(fit - keep) * layer_gib:.0f} GiB more on "
                "each GPU), or "
            )
        line += (
            "lower data.seq_length, spread the sequence over more nodes (parallelism.sp_size), or turn an offload off"
        )
    return line
