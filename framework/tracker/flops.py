"""Training FLOPs per token and the peak of each card, for TFLOP/s and MFU.

Model FLOPs (the MFU convention of PaLM, arXiv 2204.02311 appendix B, and Megatron-LM): a matmul of an [m, k] by a
[k, n] costs 2mkn; backward costs twice forward, so training costs 3x forward. Per token of a sequence of s tokens:
  dense:     6 * N, N = parameters of every matmul (attention projections, MLP, LM head; no embedding lookup, no
             norms). A tied LM head is counted: the matmul runs whether or not its weight is shared.
  attention: 6 * L * h_q * d * s for causal attention. Forward, QK^T and PV each cost 2 * s * h_q * d per token and
             layer over the full s x s square (PaLM's 12 * L * H * Q * T per token for training); a causal mask
             needs half of it.
Activation checkpointing recomputes the forward (and tiled MLP recomputes the MLP forward once more); that work is
*not* counted, so the MFU reported is model FLOPs utilisation, comparable across recipes (hardware FLOPs would be
about 4/3 of it with full recompute). A packed row's attention is counted per document (sum of s_doc^2), since
document masking skips the rest.

The peak is the card's dense bf16 datasheet figure (no sparsity), found from the device name; set
hardware.peak_tflops to override it (another dtype, a clock-limited card, a card not in the table).
"""

import torch

# dense bf16 peak TFLOP/s per card (datasheet, no sparsity); the longest name that matches the device name wins
PEAK_TFLOPS = {
    "H100": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.0,
    "H800": 989.0,
    "H20": 148.0,
    "GH200": 989.0,
    "A100": 312.0,
    "A800": 312.0,
    "A10G": 70.0,
    "L40S": 362.0,
    "L4": 121.0,
    "B200": 2250.0,
    "GB200": 2500.0,
    "RTX 4090": 165.0,
    "MI300X": 1307.0,
    "MI250X": 383.0,
}

# model types whose MLP is a gated (SwiGLU / GeGLU) 3-matrix MLP although their activation name does not say so
GATED_MLP_TYPES = ("gemma", "gemma2", "gemma3_text", "t5gemma")


def _text(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def head_dim(config) -> int:
    c = _text(config)
    return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads


def mlp_shape(config) -> tuple[int, int]:
    """(intermediate size, matrices per MLP): 3 for a gated MLP (gate, up, down), 2 for a plain one (fc, proj)."""
    c = _text(config)
    inter = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size
    act = str(getattr(c, "hidden_act", "") or "")
    gated = act in ("silu", "swish") or getattr(c, "model_type", "") in GATED_MLP_TYPES
    return inter, 3 if gated else 2


def matmul_params(config) -> int:
    """Parameters that take part in a matmul per token: every decoder projection and the LM head."""
    c = _text(config)
    h, L, v = c.hidden_size, c.num_hidden_layers, c.vocab_size
    d = head_dim(config)
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    attn = h * q + 2 * h * kv + q * h  # q, k, v, o
    inter, mats = mlp_shape(config)
    return L * (attn + mats * h * inter) + h * v


def attention_flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs of causal attention (QK^T and PV) for one token of a `seq_len`-token sequence."""
    c = _text(config)
    return 6 * c.num_hidden_layers * c.num_attention_heads * head_dim(config) * seq_len


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs for one token of a causal sequence of `seq_len` tokens."""
    return 6 * matmul_params(config) + attention_flops_per_token(config, seq_len)


def flops_of_rows(config, doc_lengths_per_row) -> float:
    """Training FLOPs of rows given as lists of document lengths (one list per row)."""
    total = 0.0
    for docs in doc_lengths_per_row:
        total += 6 * matmul_params(config) * sum(docs)
        total += sum(attention_flops_per_token(config, s) * s for s in docs)
    return total


def flops_of_positions(config, position_ids: torch.Tensor) -> float:
    """Training FLOPs of the tokens whose position ids are given (`[b, s_local]`, any shard of any row).

    A query token at position p of its document attends to p + 1 keys: causal attention costs 12 * L * h_q * d *
    (p + 1) for it (forward QK^T and PV: 2 * 2 * h_q * d per key and layer; training: 3x). Summed over a row of one
    document that is 6 * L * h_q * d * s * (s + 1), i.e. attention_flops_per_token(s + 1) per token; over a packed
    row it is the per-document sum, whatever SP shard each token sits on. One CPU-GPU sync point.
    """
    c = _text(config)
    keys = float((position_ids.to(torch.float64) + 1).sum())
    return (
        6 * matmul_params(config) * position_ids.numel()
        + 12 * c.num_hidden_layers * c.num_attention_heads * head_dim(config) * keys
    )


def peak_for_name(name: str) -> float:
    """Dense bf16 peak TFLOP/s of a card from its device name (0 when not in the table)."""
    hits = [k for k in PEAK_TFLOPS if k in name]
    return PEAK_TFLOPS[max(hits, key=len)] if hits else 0.0


def peak_tflops(override: float = 0.0) -> float:
    """Peak dense bf16 TFLOP/s of this process's card (0 when unknown, e.g. on CPU: MFU is then reported as 0)."""
    if override > 0:
        return override
    if not torch.cuda.is_available():
        return 0.0
    return peak_for_name(torch.cuda.get_device_name())
