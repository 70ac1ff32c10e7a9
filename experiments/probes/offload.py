"""Does offloading the checkpointed hidden states lower the GPU peak? One GPU, no DeepSpeed engine: the Llama-3.2-1B
shape's decoder (16 layers, hidden 2048, random bf16 weights) on one sequence, activation checkpointing per layer,
forward + backward of sum(h^2) over the last hidden states (no LM head). Modes:
  none: no offload;  deepspeed: DeepSpeed's CheckpointHiddenStatesOffload as shipped;  ours: framework's subclass.
Prints one JSON line per mode: peak GPU GiB, and the offload engine's counters.
  python experiments/probes/offload.py 131072"""

import json
import sys

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

from framework.model.features import apply_features, hidden_states_offload

seq = int(sys.argv[1]) if len(sys.argv) > 1 else 131072
cuda = torch.cuda.is_available()  # a CPU run only checks the script runs (no offload, no memory figures)
dev = "cuda" if cuda else "cpu"
if not cuda:
    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        setattr(torch.cuda, name, lambda: None)
    torch.cuda.memory_allocated = torch.cuda.max_memory_allocated = lambda: 0
    torch.cuda.host_memory_stats = lambda: {}
cfg = AutoConfig.for_model(
    "llama",
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=4194304,
    rope_theta=500000.0,
    tie_word_embeddings=True,
)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa").to(dev)
apply_features(
    model,
    cfg=OmegaConf.create({"liger": False, "tiled_mlp": False, "tiled_mlp_shards": 0, "activation_checkpointing": True}),
)
model.train()
decoder = model.get_decoder()
ids = torch.randint(0, cfg.vocab_size, (1, seq), device=dev)
print(json.dumps({"torch": torch.__version__, "seq": seq, "checkpoint_gib_per_layer": seq * 2048 * 2 / 2**30}))


def contexts():
    from deepspeed.runtime.activation_checkpointing.offload_activations import CheckpointHiddenStatesOffload

    return {"none": None, "deepspeed": CheckpointHiddenStatesOffload, "ours": hidden_states_offload()}


for mode, cls in list(contexts().items()) * 2:  # twice: the second round is warm
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ctx = cls() if cls else None
    after_fwd = None
    if ctx:
        ctx.__enter__()
    try:
        h = decoder(input_ids=ids, use_cache=False).last_hidden_state
        loss = h.float().pow(2).mean()
        torch.cuda.synchronize()
        after_fwd = (torch.cuda.memory_allocated() - base) / 2**30
        fwd_peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        loss.backward()
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
    torch.cuda.synchronize()
    stats = vars(ctx.stats) if ctx else {}
    print(
        json.dumps(
            {
                "mode": mode,
                "peak_gib_above_weights": round((torch.cuda.max_memory_allocated() - base) / 2**30, 2),
                "forward_peak_gib": round(fwd_peak, 2),
                "held_after_forward_gib": round(after_fwd, 2),
                "host_pinned": torch.cuda.host_memory_stats().get("allocated_bytes.peak", 0) / 2**30,
                **{k: v for k, v in stats.items() if not k.endswith("bytes")},
                "offloaded_gib": round(stats.get("offloaded_bytes", 0) / 2**30, 2),
            }
        ),
        flush=True,
    )
    del h, loss
