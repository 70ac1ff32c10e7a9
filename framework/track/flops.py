"""Training FLOPs per token and the peak of each card, for TFLOP/s and MFU.

Model FLOPs (the MFU convention of PaLM / Megatron): a matmul of an [m, k] by a [k, n] costs 2mkn; backward costs
twice forward, so training costs 3x forward. Per token:
  dense:     6 * N, N = parameters of every matmul (attention projections, MLP, LM head; no embedding lookup)
  attention: 6 * 2 * L * s * h_q * d / 2 for causal attention over a sequence of s tokens: QK^T and PV are each
             2 * s * h_q * d FLOPs per token forward, of which causal attention needs half.
Activation checkpointing recomputes the forward (and tiled MLP recomputes the MLP forward once more); that work is
*not* counted, so MFU here is model FLOPs utilisation, comparable across recipes. A packed row's attention is
counted per document (sum of s_doc^2), since document masking skips the rest.
"""
import torch

# dense bf16 peak TFLOP/s per card (datasheet, no sparsity)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "B200": 2250.0, "L40S": 362.0}


def matmul_params(config) -> int:
    """Parameters that take part in a matmul per token: every decoder projection and the LM head."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    h, L, v = c.hidden_size, c.num_hidden_layers, c.vocab_size
    d = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    attn = h * q + 2 * h * kv + q * h
    mlp = 3 * h * c.intermediate_size  # gate, up, down (SwiGLU)
    return L * (attn + mlp) + h * v


def flops_per_token(config, seq_len: int) -> float:
    """Training FLOPs for one token of a causal sequence of `seq_len` tokens."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    attn = 6 * 2 * c.num_hidden_layers * c.num_attention_heads * d * seq_len / 2
    return 6 * matmul_params(config) + attn


def flops_of_rows(config, doc_lengths_per_row) -> float:
    """Training FLOPs of rows given as lists of document lengths (one list per row)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    d = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    total = 0.0
    for docs in doc_lengths_per_row:
        n = sum(docs)
        total += 6 * matmul_params(config) * n
        total += 6 * 2 * c.num_hidden_layers * c.num_attention_heads * d * sum(s * s for s in docs) / 2
    return total


def peak_tflops(override: float = 0.0) -> float:
    """Peak dense bf16 TFLOP/s of this process's card (0 when unknown, e.g. on CPU: MFU is then reported as 0)."""
    if override > 0:
        return override
    if not torch.cuda.is_available():
        return 0.0
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)
