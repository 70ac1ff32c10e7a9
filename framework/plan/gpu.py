"""GPU memory and step time of one training step, predicted from the model's shape and the config.

Every term is a count of bytes or FLOPs with its source; the few constants that are not counts were measured on the
GPU runs recorded in experiments/ (named where they are defined) and are checked against all of them by
tests/unit/test_plan_replay.py (peak within 10%, step time within 25%).

Units: bytes and seconds; `Setup` holds what the prediction needs, flat, so a term can be checked by hand.
Shapes: s the sequence, s_local = s / sp_size a rank's share, h hidden, I intermediate, kv = kv_heads x head_dim.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List

GIB = 2**30

# ---- constants measured on the GPU runs of experiments/ (fit on them; see tests/unit/test_plan.py) ----
MATMUL_FRACTION = 0.62
"""Share of the card's dense bf16 peak the matmuls and the memory-bound kernels between them (norms, RoPE, residual
adds, casts) reach together: fit on the step times of experiments/alst_2gpu, alst_4gpu, packed_vs_unpacked (the
README of alst_2gpu bounds the matmuls alone at about 700 TFLOP/s on an H100, 0.71)."""
ATTENTION_TFLOPS = {
    "cudnn": {64: {65536: 453.0, 262144: 433.0}, 128: {65536: 589.0, 262144: 566.0}},
    "flash": {64: {65536: 292.0, 262144: 293.0}, 128: {65536: 330.0, 262144: 327.0}},
}
"""Causal attention fwd + bwd, TFLOP/s (counted as 3.5 x 2 s^2 heads d), by kernel, head_dim and sequence length:
one H200 (dense bf16 peak 989, as an H100's), torch 2.11, cuDNN 9.19, bf16, 32 q / 8 kv heads, measured 2026-12-03
(issue 28's table; experiments/attention_kernels has the same kernels at 450 / 570 on 2026-11-26). "cudnn": SDPA's
default dispatch (it picks cuDNN, with enable_gqa or the KV heads repeated); "flash": SDPA forced to flash, the
kernel of flash_attention_2, the packed rows' varlen_attn and the ring. attention_rate interpolates."""
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
    params: int  # all parameters (matmuls + embedding table unless tied)
    matmul_params: int  # those in a matmul per token (framework.tracker.flops.matmul_params)
    mlp_params: int  # those in the decoder MLPs
    trainable: int  # those with gradients and optimizer states (all, or LoRA's adapters)
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
    attention_kernel: str = "cudnn"  # a key of ATTENTION_TFLOPS: what the run's attention calls (attention_kernel)
    first_step: bool = False  # the peak of step 1: Adam's moments do not exist yet during its backward
    eval_every: int = 0  # eval.every: an evaluation every N steps (0: none in the step loop)
    eval_only: bool = False  # eval.only: one evaluation, forward only (no gradients, no optimizer state)
    eval_steps: int = 0  # held-out micro-batches per evaluation (eval.steps; 0: no evaluation)
    passkey_lengths: Any = None  # eval.passkey_lengths when eval.passkey (None: no passkey cases)
    passkey_cells: int = 0  # passkey cases per length: depths x samples
    pieces: int = 1  # shards of a row (sp, or 2 x cp x sp): passkey lengths round down to a multiple

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
    DeepSpeed's bf16 mixed precision): bf16 weights 2 B per parameter, fp32 master + Adam's two moments 12 B per
    trainable parameter. ZeRO partitions over all `world` ranks (SP ranks included): stage 1 the optimizer states, 2
    also the gradients, 3 also the weights, of which it gathers a layer at a time (plus the prefetch bucket; the LM
    head is the largest module). Offloaded states live on the host instead.
    Gradients: stages 1-2 keep them in the model's dtype until the step (DeepSpeed's gradient_accumulation_dtype is
    the model dtype unless data_types.grad_accum_dtype says fp32; stage_1_and_2.py's grads_in_partition), 2 B per
    trainable parameter, and its double-buffered reduce bucket (overlap_comm) in that dtype, 2 x 2 B x
    reduce_bucket_size; the fp32 copy of the partition exists only inside the step, after the activations are gone.
    Stage 3 (every recorded run offloads its optimizer): 4 B per trainable parameter and 8 B x reduce_bucket_size of
    buffers, as fit on experiments/alst_2gpu and alst_4gpu.
    eval.only builds the engine without an optimizer (framework.graph): the weights alone, nothing to reduce."""
    P, T, N, B = u.params, u.trainable, u.world, u.reduce_bucket_size
    out = {}
    if u.zero_stage == 3:
        layer = (u.matmul_params - u.hidden * u.vocab) / u.layers
        out["weights"] = (0 if u.offload_params else 2 * P / N) + 2 * max(layer, u.hidden * u.vocab) + 2 * B
    else:
        out["weights"] = 2 * P
    if u.eval_only:
        return out
    grad_bytes = 4 if u.zero_stage == 3 else 2
    if not u.offload_optimizer:
        out["gradients"] = grad_bytes * T / (N if u.zero_stage >= 2 else 1)
        out["optimizer_states"] = (4 if u.first_step else 12) * T / (N if u.zero_stage >= 1 else 1)
    out["buckets"] = 8 * B if u.zero_stage == 3 else 2 * 2 * B
    return out


def layer_phases(u: Setup) -> Dict[str, float]:
    """Bf16 elements per token of this rank that one decoder layer's backward holds at once, at each of the three
    moments where it peaks (the layer's input is a checkpoint, counted in `activations`). Counted from what the code
    allocates (tests/unit/test_plan.py checks the saved set of transformers' layer against autograd on the CPU):
    - saved by the recomputed forward: transformers' RMSNorm keeps an fp32 copy of its input and the normalized bf16
      (3h), Liger's only its input (the residual stream: the second norm's, h, is new); each norm's output h; q after
      RoPE h (transformers' RoPE saves only cos/sin, so the projection's q dies; Liger's rotates in place) and k, v
      2kv; the kernel's output h (unless kept: `kept_attention`); with SP, o_proj's input, the all-to-all's copy h;
      the MLP's gate, up, act(gate), product 4I (Liger's SwiGLU 3I: act is recomputed), tiled only its input;
    - mlp: the saved set, the gradient of the layer's output h and the MLP's backward: transformers' SwiGLU holds the
      product's gradient and the two it makes (2I beyond the freed product), Liger's writes them in place (I), the
      tiled MLP the gradient of its input (h);
    - norm: transformers' RMSNorm backward holds three fp32 [s, h] temporaries (6h) with the attention's saved set,
      the norm's own and two gradients (Liger's works in place: never the peak);
    - attention: the attention's saved set (o_proj's input freed by then), the residual's and the kernel output's
      gradients (2h; with SP the latter is the all-to-all's copy, the one before it freed), dq dk dv (h + 2kv), the
      kernel's fp32 dq accumulator (2h) and with GQA dk, dv for every q head before their sum (2h; flash-attention's
      mha_bwd: dq_accum, dk_expanded, dv_expanded)."""
    h, I, kv, sp = u.hidden, u.intermediate, u.kv, u.sp_size > 1
    kept = u.activation_checkpointing and u.kept_attention_layers > 0  # the last layers keep, and run backward first
    norm = 0 if u.liger else 3 * h
    attn = norm + h + h + 2 * kv + (0 if kept else h) + (h if sp else 0)
    mlp_saved = 0 if u.tiled_mlp else (3 if u.liger else 4) * I
    mlp_grad = h if u.tiled_mlp else (1 if u.liger else 2) * I
    phases = {
        "mlp": attn + (h if u.liger else 0) + norm + h + mlp_saved + h + mlp_grad,
        "attention": attn - (h if sp else 0) + 2 * h + h + 2 * kv + 2 * h + (2 * h if kv < h else 0),
    }
    if not u.liger:
        phases["norm"] = attn + norm + 2 * h + 6 * h
    return phases


def layer_working_set(u: Setup) -> float:
    """Bytes per token of this rank one decoder layer's backward holds at its peak (layer_phases' largest)."""
    return 2 * max(layer_phases(u).values())


def activations(u: Setup) -> Dict[str, float]:
    """Bytes per GPU of activations at the peak, for b = micro_batch_size rows:
    - checkpoints: each layer's input, s_local x h x 2 B, kept for backward (the offloaded ones on the host, but the
      last offload_keep_layers, and one restored at a time);
    - without checkpointing every layer's saved set stays alive instead;
    - kept attention: s x heads_local x d x 2 B output + fp32 softmax statistics per kept layer
      (experiments/keep_attention: 8 layers x 528 MiB measured at 128K, 1B);
    - tiled MLP: one tile's [tile, I] x 4 elements, tile = ceil(s_local / shards), shards default ceil(s_local / h);
    - then the larger of two moments that do not overlap (gpu_peak): a layer's backward (layer_working_set), and the
      loss's: untiled, 12 B per [s_local, vocab] element (fp32 logits, log-softmax output, its gradient and the
      incoming one; 115.1 against 32.1 GiB with and without, 1B at 64K, experiments/seqlen_sweep); tiled, one tile of
      about 1 GiB of fp32 logits and its gradient (loss.tiled_shards=0), or Liger's fused linear CE: a chunk of
      next_pow2(s_local / ceil(vocab / h)) rows of bf16 logits and, with a trainable head, its fp32 gradient
      (vocab x h x 4 B); with the loss, the final hidden states and their gradient, s_local x h x 4 B.
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
        saved = 2 * (layer_phases(u)["mlp"] - u.hidden - (u.hidden if u.tiled_mlp else 0))  # saved set of a layer
        out["layers"] = u.layers * (tokens * saved + ckpt)
    heads_local = u.heads / u.sp_size
    kept = u.kept_attention_layers if u.activation_checkpointing else 0
    out["kept_attention"] = kept * b * u.seq_length * heads_local * (u.head_dim * 2 + 4)
    if u.tiled_mlp:
        shards = u.tiled_mlp_shards or math.ceil(tokens / h)
        out["mlp_tile"] = math.ceil(tokens / max(shards, 1)) * u.intermediate * 4 * 2
    if not u.loss_tiled:
        loss = tokens * u.vocab * 12
    elif u.liger:
        chunk = 1 << (math.ceil(tokens / math.ceil(u.vocab / h)) - 1).bit_length()
        loss = chunk * u.vocab * 2 + (u.vocab * h * 4 if u.trainable >= u.params else 0)
    else:
        loss = 2.5 * GIB
    out["logits"] = loss + tokens * h * 4
    return out


def eval_activations(u: Setup) -> float:
    """Bytes per GPU of an evaluation's forward beyond the model states, at its peak: with no gradient nothing is saved
    (no checkpoints, no kept attention), so it is the larger of one decoder layer's forward and the per-token loss.
    A held-out micro-batch is a training one (b rows of s_local tokens); a passkey case is one row no longer.
    - a layer (bf16 elements per token, transformers' Llama layer, counted from its code and summed as if all were
      alive at once, an upper bound): the residual h, the norm's fp32 copy and normalized fp32 4h and output h;
      q, k, v h + 2kv, RoPE's rotated q, k and their temporaries 2h, with SP the all-to-all's copies h + 2kv, the
      kernel's output h; or the MLP's act(gate), up and their product 3I (the gate dies into act; tiled: one tile's)
      beside the residual and the norm's output;
    - the loss (framework.loss.causal_lm.per_token): one tile's logits in bf16 and fp32 and the log-softmax of
      cross_entropy, 2 + 4 + 4 B per [tokens, vocab] element (the bf16 dies first: an upper bound; untiled every
      token, loss.tiled tiles of at most 1 GiB of fp32 logits, auto_tiles), and each token's hidden state, CE and
      argmax (2h + 4 + 8 B).
    Each is no more than training's counterpart (activations: layer_backward holds the saved set and gradients,
    the loss 12 B per element or a 2.5 GiB tile), except against Liger's fused loss, whose chunks are smaller than
    evaluation's tiles; gpu_peak takes the larger moment anyway."""
    b, h, I, kv = u.micro_batch_size, u.hidden, u.intermediate, u.kv
    tokens = b * u.s_local
    attention = 6 * h + 2 * kv + 2 * h + (h + 2 * kv if u.sp_size > 1 else 0) + h
    if u.tiled_mlp:
        shards = u.tiled_mlp_shards or math.ceil(tokens / h)
        mlp = 2 * h * tokens + 3 * I * math.ceil(tokens / max(shards, 1))
    else:
        mlp = (2 * h + 3 * I) * tokens
    layer = max(2 * attention * tokens, 2 * mlp)
    tiles = max(1, math.ceil(tokens * u.vocab * 4 / GIB)) if u.loss_tiled else 1
    loss = math.ceil(tokens / tiles) * u.vocab * 10 + tokens * (2 * h + 12)
    return max(layer, loss)


def gpu_peak(u: Setup) -> Dict[str, float]:
    """GiB per GPU, allocated, at the step's peak, by term, and `total`: the model states, checkpoints, kept
    attention outputs and the MLP tile, plus the larger of the loss's (`logits`: its backward ends before the
    layers' starts) and a layer's backward. With evaluation, `eval_forward` (eval_activations) beside the model states
    is another moment: the total is the larger of the two. eval.only: the weights and the evaluation alone."""
    if u.eval_only:
        parts = {k: v / GIB for k, v in model_states(u).items()}
        parts["eval_forward"] = eval_activations(u) / GIB
        parts["total"] = sum(parts.values())
        return parts
    states = {k: v / GIB for k, v in model_states(u).items()}
    parts = {**states, **{k: v / GIB for k, v in activations(u).items()}}
    transient = ("logits", "layer_backward")
    total = sum(v for k, v in parts.items() if k not in transient) + max(
        (parts.get(k, 0.0) for k in transient), default=0.0
    )
    if u.eval_steps:
        parts["eval_forward"] = eval_activations(u) / GIB
        total = max(total, sum(states.values()) + parts["eval_forward"])
    parts["total"] = total
    return parts


def attention_rate(kernel: str, head_dim: int, length: int, peak_tflops: float = 989.0) -> float:
    """FLOP/s of the causal attention kernel (ATTENTION_TFLOPS): linear in head_dim between the measured 64 and 128,
    linear in log2(length) between the measured 64K and 256K, the nearest measured value outside them; scaled by
    the card's peak over the H200's 989 (the cards it was measured on share that peak)."""
    table = ATTENTION_TFLOPS.get(kernel, ATTENTION_TFLOPS["flash"])

    def between(points: Dict[int, float], x: float, scale=lambda v: v) -> float:
        (x0, y0), (x1, y1) = sorted(points.items())[0], sorted(points.items())[-1]
        t = min(max((scale(x) - scale(x0)) / (scale(x1) - scale(x0)), 0.0), 1.0)
        return y0 + t * (y1 - y0)

    by_dim = {d: between(rates, max(length, 1), math.log2) for d, rates in table.items()}
    return between(by_dim, head_dim) * 1e12 * peak_tflops / 989.0


def forward_pass(u: Setup, length: int, rows: int) -> float:
    """Seconds of one forward without gradient (an evaluation's) of `rows` rows of `length` tokens on one rank: the
    matmuls and attention as step_time counts a training forward, with one all-to-all pass under SP and one gather
    of the weights under ZeRO-3."""
    tokens = rows * length / u.sp_size
    matmul = u.peak_tflops * 1e12 * MATMUL_FRACTION
    attn = rows * 2 * u.layers * u.heads * u.head_dim * length**2 / u.sp_size
    rate = attention_rate(u.attention_kernel, u.head_dim, length, u.peak_tflops)
    seconds = (2 * u.matmul_params * tokens / matmul + attn / rate) * COMPUTE_OVERHEAD
    if u.sp_size > 1:
        moved = u.layers * tokens * (2 * u.hidden + 2 * u.kv) * 2 * (u.sp_size - 1) / u.sp_size
        seconds += moved / (A2A_GBPS[u.sp_size <= u.ranks_per_node] * 1e9)
    if u.zero_stage == 3 and u.world > 1:
        seconds += 2 * u.params * (u.world - 1) / u.world / (LINK_GBPS[u.world <= u.ranks_per_node] * 1e9)
    return seconds


def passkey_lengths(u: Setup) -> List[int]:
    """The length of each passkey case, as the evaluator makes them (framework.eval.passkey.lengths: `auto` is
    seq_length x 1/8, 1/4, 1/2, 1, each rounded down to a multiple of the row's pieces), passkey_cells cases each."""
    if u.passkey_lengths is None:
        return []
    from framework.eval.passkey import lengths

    return [used for _, used in lengths(u.passkey_lengths, u.seq_length, u.pieces) for _ in range(u.passkey_cells)]


def eval_time(u: Setup) -> Dict[str, float]:
    """Seconds of one evaluation on one rank, by part: `eval_held_out`, eval_steps forwards of a training micro-batch
    (held-out rows are as long as training's); `eval_passkey`, this rank's share of the passkey cases, one forward of
    one row each (the DP replicas split the cases: each runs ceil(cases / dp) of them). The evaluation forward has
    the training forward's rate (measured on an H200: a held-out row 1.00-1.01x a plain no-grad forward, which
    equals the training step's forward; experiments/long_context_eval)."""
    out = {"eval_held_out": u.eval_steps * forward_pass(u, u.seq_length, u.micro_batch_size)}
    cases = passkey_lengths(u)
    if cases:
        share = math.ceil(len(cases) / max(u.world // u.sp_size, 1)) / len(cases)
        out["eval_passkey"] = share * sum(forward_pass(u, n, 1) for n in cases)
    return out


def step_time(u: Setup) -> Dict[str, float]:
    """Seconds of one optimizer step on one rank, by part, and `total` (forward + backward + optimizer, and with
    eval.every one evaluation (eval_time) spread over its `every` steps: `eval`). eval.only: the one evaluation.

    FLOPs per rank (framework/tracker/flops.py's counts; a rank runs s_local tokens of every matmul and 1/sp of the
    heads of attention): matmuls 2N per token forward, 4N backward (2N when the weight is frozen, LoRA), 2N more
    when checkpointing recomputes the forward and 2 x MLP parameters more when tiled MLP recomputes the MLP again.
    Attention's kernel: 2 L h_q d s^2 / sp forward (causal), 2.5x that backward, once more forward for the
    layers that recompute it. Rates: MATMUL_FRACTION of the peak, attention_rate for the kernel the run calls.
    Communication: the Ulysses all-to-alls (q k v out, per pass) and ZeRO-3's gathers (forward, recompute, backward) and
    gradient reduction at link bandwidth; the checkpoint copies at PCIe bandwidth, only where longer than the pass they
    overlap; the optimizer from CPU_ADAM_S_PER_PARAM."""
    if u.eval_only:
        out = eval_time(u)
        out["total"] = sum(out.values())
        return out
    b, g = u.micro_batch_size, u.grad_accum
    tokens = b * g * u.s_local
    N, Nt, Nm = u.matmul_params, min(u.trainable, u.matmul_params), u.mlp_params
    matmul = u.peak_tflops * 1e12 * MATMUL_FRACTION
    attn_rate = attention_rate(u.attention_kernel, u.head_dim, u.seq_length, u.peak_tflops)
    attn_fwd = b * g * 2 * u.layers * u.heads * u.head_dim * u.seq_length**2 / u.sp_size
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
    if u.eval_every and u.eval_steps:
        out["eval"] = sum(eval_time(u).values()) / u.eval_every
    out["total"] = sum(out.values())
    return out
