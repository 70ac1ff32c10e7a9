"""How much host memory does one pinned buffer take, and does this torch honour pinned_max_round_threshold_mb?
    python experiments/pinned_probe/probe.py                     # torch's default: rounded up to a power of two
    PYTORCH_CUDA_ALLOC_CONF=pinned_max_round_threshold_mb:64 python experiments/pinned_probe/probe.py
Pins buffers the size of one rank's checkpointed hidden states for Llama-3.1-8B (4,096 x 2 B per token) at the
lengths of experiments/alst_2gpu (sp_size=2) and prints what torch's host allocator holds for each.
Run on 2 x H100, torch 2.11 (2026-11-26, session 6; experiments/alst_2gpu/h100_2026-11-26_s6/): with the key, the first
pin raised "Unrecognized key 'pinned_max_round_threshold_mb'"; without it every reading was 0, which is wrong (cause
not found). The framework's own pinned figure showed the rounding: 52.0 GiB per rank at 384K = 24 + 14 x 2."""
import os

import torch

GIB = 2**30
print(f"torch {torch.__version__}, PYTORCH_CUDA_ALLOC_CONF={os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')!r}")
print("| seq len | a rank's checkpoint GiB | pinned block GiB |")
print("|---|---|---|")
kept = []  # all stay alive: a freed block would be reused for the next size
for seq in (262_144, 327_680, 393_216, 458_752):
    nbytes = seq // 2 * 4096 * 2
    before = torch.cuda.host_memory_stats().get("allocated_bytes.current", 0)
    kept.append(torch.empty(nbytes, dtype=torch.uint8).pin_memory())
    held = torch.cuda.host_memory_stats().get("allocated_bytes.current", 0) - before
    print(f"| {seq // 1024}K | {nbytes / GIB:.2f} | {held / GIB:.2f} |", flush=True)
