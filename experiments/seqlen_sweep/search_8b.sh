#!/usr/bin/env bash
# The longest-sequence search (hydra/sweeper=max_seqlen) on the Llama-3.1-8B shape, 2 GPUs, sp_size=2, with the
# peer's memory setup (llama8b_2gpu_64k: ZeRO-3 + CPU optimizer, activation checkpointing, full logits), so each
# probe fits a 10-minute device call; max_seqlen.json, summary.csv/png and the log land in $OUT.
#   bash experiments/seqlen_sweep/search_8b.sh [extra overrides]  (project root, GPU machine, after .device/install.sh)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m framework -m +experiment=llama8b_2gpu_64k hydra/sweeper=max_seqlen hydra.sweeper.start=131072 \
  hydra.sweeper.factor=1.5 hydra.sweeper.granularity=32768 hydra.sweeper.steps=2 hydra.sweep.dir=/tmp/search8b \
  "$@" > /tmp/search8b.log 2>&1
echo "search exit $?"
grep -E '^max_seqlen|^step|^\[' /tmp/search8b.log | cut -c1-300 | tee "$OUT/search8b_lines.log"
cp /tmp/search8b/max_seqlen.json /tmp/search8b/summary.csv /tmp/search8b/summary.png "$OUT/" 2>/dev/null
