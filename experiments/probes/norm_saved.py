"""What transformers' LlamaRMSNorm keeps for backward, per token, in bf16 hidden-size vectors (CPU is enough: the
autograd graph is the same on a GPU).
    python experiments/probes/norm_saved.py
Each decoder layer has two such norms, and with activation checkpointing the layer under backward holds them."""

import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

hidden, tokens = 4096, 512
storages = {}


def pack(t):
    storages[t.untyped_storage().data_ptr()] = (t.dtype, t.untyped_storage().nbytes())
    return t


x = torch.randn(1, tokens, hidden, dtype=torch.bfloat16, requires_grad=True)
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    LlamaRMSNorm(hidden).to(torch.bfloat16)(x)
for dtype, nbytes in storages.values():
    print(f"{dtype}: {nbytes / tokens / (2 * hidden):.2f} hidden vectors per token")
print(f"total: {sum(n for _, n in storages.values()) / tokens / (2 * hidden):.2f}")
