"""GPU memory and step time of one training step, predicted from the model's shape and the config.

Every term is a count of bytes or FLOPs with its source; the few constants that are not counts were measured on the
GPU runs recorded in experiments/ (named where they are defined) and are checked against all of them by
tests/unit/test_plan.py (peak within 15%, step time within 25%).

Units: bytes and seconds; `Setup` holds what the prediction needs, flat, so a term can be checked by hand.
Shapes: s the sequence, s_local = s / sp_size a rank's share, h hidden, I intermediate, kv = kv_heads x head_dim.
"""
import math
from dataclasses import dataclass
from typing import Dict

GIB = 2**30

# ---- constants measured on the GPU runs of experiments/ (fit on them; see tests/unit/test_plan.py) ----
MATMUL_FRACTION = 0.62
"""Share of the card's dense bf16 peak the matmuls and the memory-bound kernels between them (norms, RoPE, residual
adds, casts) reach together: fit on the step times of experiments/alst_2gpu, alst_4gpu, packed_vs_unpacked (the
README of alst_2gpu bounds the matmuls alone at about 700 TFLOP/s on an H100, 0.71)."""
ATTENTION_FRACTION = {64: 450 / 989, 128: 570 / 989}
"""Share of the peak the causal SDPA kernel (cuDNN) reaches, by head_dim: experiments/attention_kernels, one H200,
1B shape (d 64) 450 TFLOP/s, 8B shape (d 128) 570 at 256K (559 on one H100). Other head dims take the nearest."""
A2A_GBPS = {True: 150.0, False: 40.0}
"""Ulysses all-to-all bandwidth per rank, GB/s, inside a node (NVLink) and across nodes (InfiniBand, 400 Gb/s per
GPU less overheads). Assumed: no run of experiments/ isolates it (at 256K on 2 x H100 it is under 2% of the step)."""
LINK_GBPS = {True: 150.0, False: 40.0}
"""ZeRO all-gather / reduce-scatter bandwidth per rank, GB/s, inside a node and across nodes. Assumed, as A2A_GBPS."""
PCIE_GBPS = 20.0
"""Host <-> GPU copies of offloaded checkpoints, GB/s per GPU (PCIe 5 x16 pinned, shared with the optimizer offload).
Assumed; the copies run on a side stream and only the part longer than the compute they overlap counts."""
CPU_ADAM_S_PER_PARAM = {False: 1.05e-9, True: 0.80e-9, "gpu": 0.20e-9}
"""Optimizer part of a step per parameter a rank owns, seconds: CPU Adam after backward (plain offload: 4.2 s for
4.0e9 per rank, alst_2gpu 64K peer setup), under SuperOffload the part not hidden by backward (3.2 s, alst_2gpu
256K; 2.2 s for 2.0e9, alst_4gpu 512K), and the fused GPU Adam (0.21-0.30 s for 1.24e9, packed_vs_unpacked and
keep_attention). Each includes DeepSpeed's copies of gradients down and parameters up."""
WORKING_SET = {False: 1.0, True: 0.6}
"""Multiplier on the hand-counted working set of one layer's backward (layer_working_set); key: Liger with tiled MLP.
The count holds without Liger (8B 256K on 2 x H100: 0.99 of it measured; 1B at 64K: packed_vs_unpacked); with Liger
and tiled MLP, 0.58 to 0.63 of it was measured (256K, 384K, 512K, 1M: experiments/alst_2gpu, alst_4gpu): a fit, not
derived. Liger with the MLP untiled keeps the plain count (the 1B run at 256K on one H200 of issue 18: 71.2 GiB)."""
COMPUTE_OVERHEAD = 1.10
"""Measured forward + backward time over the FLOP-rate prediction: kernel launch gaps, CPU-GPU syncs and the
memory-bound kernels the FLOP counts leave out; 1.08 to 1.12 on every run of experiments/ past step 1."""
FRAGMENTATION = 1.07
"""Reserved over allocated GPU memory at the wall (expandable segments): 74.3 reserved for 70.7 allocated, the 8B
256K run without Liger that trained at 94% of an H100 (alst_2gpu); 75.8 for 71.1 when 448K ran out. The plan fits
when peak x FRAGMENTATION <= the card's memory."""
CONTEXT_GIB = 0.6
"""What CUDA, NCCL and cuBLAS workspaces take on a GPU besides tensors (the card's total less what torch can
allocate): about 0.5-0.7 GiB on an H100 with torch 2.11."""


@dataclass
class Setup:
    """One rank's view of a job: the model's shape, the parallel degrees and the memory features."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: int          # all parameters (matmuls + embedding table unless tied)
    matmul_params: int   # those in a matmul per token (framework.tracker.flops.matmul_params)
    mlp_params: int      # those in the decoder MLPs
    trainable: int       # those with gradients and optimizer states (all, or LoRA's adapters)
    seq_length: int
    micro_batch_size: int = 1
    grad_accum: int = 1
    world: int = 1
    sp_size: int = 1
    ranks_per_node: int = 1
    zero_stage: int = 3
    offload_optimizer: bool = False
    offload_params: bool = False
    super_offload: bool = False
    reduce_bucket_size: int = 125_000_000
    activation_checkpointing: bool = False
    recompute_attention: bool = True
    keep_attention_layers: int = 0
    offload_activations: bool = False
    offload_keep_layers: int = 1
    tiled_mlp: bool = False
    tiled_mlp_shards: int = 0
    liger: bool = False
    loss_tiled: bool = False
    peak_tflops: float = 989.0
    first_step: bool = False  # the peak of step 1: Adam's moments do not exist yet during its backward

    @property
    def s_local(self) -> int:
        return self.seq_length // self.sp_size

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def kept_attention_layers(self) -> int:
        """Layers whose attention output backward reuses instead of recomputing (all of them without checkpointing:
        nothing is recomputed)."""
        if not self.activation_checkpointing or not self.recompute_attention:
            return self.layers
        return min(self.keep_attention_layers, self.layers)


def model_states(u: Setup) -> Dict[str, float]:
    """Bytes per GPU of weights, gradients, optimizer states and ZeRO's buffers (ZeRO paper, arXiv 1910.02054, with
    DeepSpeed's bf16 mixed precision): bf16 weights 2 B per parameter, fp32 gradient partition 4 B and fp32 master +
    Adam's two moments 12 B per trainable parameter. ZeRO partitions over all `world` ranks (SP ranks included):
    stage 1 the optimizer states, 2 also the gradients, 3 also the weights, of which it gathers a layer at a time
    (plus the prefetch bucket; the LM head is the largest module). Offloaded states live on the host instead."""
    P, T, N, B = u.params, u.trainable, u.world, u.reduce_bucket_size
    out = {}
    if u.zero_stage == 3:
        layer = (u.matmul_params - u.hidden * u.vocab) / u.layers
        out["weights"] = (0 if u.offload_params else 2 * P / N) + 2 * max(layer, u.hidden * u.vocab) + 2 * B
    else:
        out["weights"] = 2 * P
    if not u.offload_optimizer:
        out["gradients"] = 4 * T / (N if u.zero_stage >= 2 else 1)
        out["optimizer_states"] = (4 if u.first_step else 12) * T / (N if u.zero_stage >= 1 else 1)
    if u.zero_stage < 2:
        out["gradients_bf16"] = 2 * T  # the model's own .grad before the reduction
    out["buckets"] = 8 * B  # reduce bucket, double-buffered, fp32 (about 1 GB for the default 1.25e8)
    return out


def layer_working_set(u: Setup) -> float:
    """Bytes one decoder layer's backward holds at once, per token of this rank (its forward recomputed under
    checkpointing, and the gradients it produces), counted in bf16 elements of a Llama-style layer:
    - norms: transformers' RMSNorm keeps an fp32 copy and the bf16 input, 3h each, Liger's the input only, 1h
      (experiments/NOTES.md, probes/norm_saved.py); two norms;
    - attention: its input h, q k v (h + 2kv), q k after RoPE (h + kv), the kernel's output h, and with SP the
      copies Ulysses' all-to-alls make (h + 2kv in, h out);
    - MLP: its input h, and gate, up, act(gate), product (4I; Liger's SwiGLU recomputes act: 3I); tiled MLP keeps
      only its input and one tile's (counted in `activations`);
    - backward: the gradient of the layer's output and input, and the attention kernel's dq dk dv (2h + h + 2kv).
    """
    h, I, kv = u.hidden, u.intermediate, u.kv
    norms = 2 * (1 if u.liger else 3) * h
    attention = h + (h + 2 * kv) + (h + kv) + h + ((h + 2 * kv) + h if u.sp_size > 1 else 0)
    mlp = h + (0 if u.tiled_mlp else (3 if u.liger else 4) * I)
    grads = 2 * h + h + 2 * kv
    return 2 * (norms + attention + mlp + grads) * WORKING_SET[u.liger and u.tiled_mlp]


def activations(u: Setup) -> Dict[str, float]:
    """Bytes per GPU of activations at the peak (the start of backward), for b = micro_batch_size rows:
    - checkpoints: each layer's input, s_local x h x 2 B, kept for backward (the offloaded ones on the host, but the
      last offload_keep_layers, and one restored at a time);
    - without checkpointing every layer's working set stays alive instead;
    - kept attention: s x heads_local x d x 2 B output + fp32 softmax statistics per kept layer
      (experiments/keep_attention: 8 layers x 528 MiB measured at 128K, 1B);
    - tiled MLP: one tile's [tile, I] x 4 elements, tile = ceil(s_local / shards), shards default ceil(s_local / h);
    - logits: untiled, bf16 logits + fp32 copy + fp32 gradient, 10 B per [s_local, vocab] element (115.1 against
      32.1 GiB with and without, 1B at 64K, experiments/seqlen_sweep); tiled, one tile of about 1 GiB of fp32 logits
      and its gradient (loss.tiled_shards=0), or Liger's fused linear CE chunks (a few hundred MiB);
    - the final hidden states and their gradient, s_local x h x 4 B.
    """
    b, s, h = u.micro_batch_size, u.s_local, u.hidden
    tokens = b * s
    out = {}
    ckpt = tokens * h * 2
    if u.activation_checkpointing:
        on_gpu = u.layers
        if u.offload_activations:
            on_gpu = min(max(u.offload_keep_layers, 1), u.layers) + 1  # + the one restored for its backward
        out["checkpoints"] = on_gpu * ckpt
        out["layer_backward"] = tokens * layer_working_set(u)
    else:
        out["layers"] = u.layers * (tokens * layer_working_set(u) + ckpt)
    heads_local = u.heads / u.sp_size
    kept = u.kept_attention_layers if u.activation_checkpointing else 0
    out["kept_attention"] = kept * b * u.seq_length * heads_local * (u.head_dim * 2 + 4)
    if u.tiled_mlp:
        shards = u.tiled_mlp_shards or math.ceil(tokens / h)
        out["mlp_tile"] = math.ceil(tokens / max(shards, 1)) * u.intermediate * 4 * 2
    if u.loss_tiled:
        out["logits"] = 0.5 * GIB if u.liger else 2.5 * GIB
    else:
        out["logits"] = tokens * u.vocab * 10
    out["final_hidden"] = tokens * h * 4
    return out


def gpu_peak(u: Setup) -> Dict[str, float]:
    """GiB per GPU, allocated, at the step's peak, by term, and `total`: the model states, checkpoints, kept
    attention outputs and final hidden states, plus the larger of the loss's logits and a layer's backward (the
    tiled loss runs its backward inside the forward, before the layers' backward starts)."""
    parts = {k: v / GIB for k, v in {**model_states(u), **activations(u)}.items()}
    transient = ("logits", "layer_backward") if u.loss_tiled else ()
    parts["total"] = sum(v for k, v in parts.items() if k not in transient) + \
        max((parts.get(k, 0.0) for k in transient), default=0.0)
    return parts


def step_time(u: Setup) -> Dict[str, float]:
    """Seconds of one optimizer step on one rank, by part, and `total` (forward + backward + optimizer).

    FLOPs per rank (framework/tracker/flops.py's counts; a rank runs s_local tokens of every matmul and 1/sp of the
    heads of attention): matmuls 2N per token forward, 4N backward (2N when the weight is frozen, LoRA), 2N more
    when checkpointing recomputes the forward and 2 x MLP parameters more when tiled MLP recomputes the MLP again.
    Attention's kernel: 2 L h_q d s^2 / sp forward (causal), 2.5x that backward, once more forward for the layers
    that recompute it. Rates: MATMUL_FRACTION and ATTENTION_FRACTION of the peak. Communication: the Ulysses
    all-to-alls (q k v out, per pass) and ZeRO-3's gathers (forward, recompute, backward) and gradient reduction at
    link bandwidth; the checkpoint copies at PCIe bandwidth, only where longer than the pass they overlap; the
    optimizer from CPU_ADAM_S_PER_PARAM.
    """
    b, g = u.micro_batch_size, u.grad_accum
    tokens = b * g * u.s_local
    N, Nt, Nm = u.matmul_params, min(u.trainable, u.matmul_params), u.mlp_params
    matmul = u.peak_tflops * 1e12 * MATMUL_FRACTION
    d = min(ATTENTION_FRACTION, key=lambda k: abs(k - u.head_dim))
    attn_rate = u.peak_tflops * 1e12 * ATTENTION_FRACTION[d]
    attn_fwd = b * g * 2 * u.layers * u.heads * u.head_dim * u.seq_length ** 2 / u.sp_size
    recomputed = (u.layers - u.kept_attention_layers) / u.layers
    fwd = 2 * N * tokens / matmul + attn_fwd / attn_rate
    bwd = (2 * N + 2 * Nt) * tokens / matmul + 2.5 * attn_fwd / attn_rate
    if u.activation_checkpointing:
        bwd += 2 * N * tokens / matmul + recomputed * attn_fwd / attn_rate
    if u.tiled_mlp:
        bwd += 2 * Nm * tokens / matmul
    out = {"forward_compute": fwd * COMPUTE_OVERHEAD, "backward_compute": bwd * COMPUTE_OVERHEAD}
    if u.sp_size > 1:
        one_node = u.sp_size <= u.ranks_per_node
        per_pass = u.layers * tokens * (2 * u.hidden + 2 * u.kv) * 2 * (u.sp_size - 1) / u.sp_size
        passes = 3 if u.activation_checkpointing else 2
        out["all_to_all"] = passes * per_pass / (A2A_GBPS[one_node] * 1e9)
    if u.zero_stage == 3 and u.world > 1:
        one_node = u.world <= u.ranks_per_node
        gathers = 3 if u.activation_checkpointing else 2
        moved = (gathers * 2 * u.params * g + 2 * u.trainable) * (u.world - 1) / u.world
        out["zero_traffic"] = moved / (LINK_GBPS[one_node] * 1e9)
    if u.offload_activations and u.activation_checkpointing:
        offloaded = max(u.layers - max(u.offload_keep_layers, 1), 0) * tokens * u.hidden * 2
        copy = offloaded / (PCIE_GBPS * 1e9)
        out["offload_copies"] = max(0.0, copy - fwd) + max(0.0, copy - bwd)
    owned = u.trainable / u.world
    key = (u.super_offload and u.zero_stage == 3) if u.offload_optimizer else "gpu"
    out["optimizer"] = owned * CPU_ADAM_S_PER_PARAM[key]
    out["total"] = sum(out.values())
    return out
