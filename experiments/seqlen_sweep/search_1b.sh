#!/usr/bin/env bash
# The longest-sequence search (hydra/sweeper=max_seqlen) on the Llama-3.2-1B shape, one GPU, with the peer's
# memory setup (activation checkpointing, full logits): max_seqlen.json and summary.csv/png land in $OUT.
#   bash experiments/seqlen_sweep/search_1b.sh [extra overrides]  (project root, GPU machine, after .device/install.sh)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
python3 -m framework -m +experiment=llama1b_1gpu loss.tiled=false hydra/sweeper=max_seqlen \
  hydra.sweeper.start=32768 hydra.sweeper.granularity=32768 hydra.sweeper.steps=2 hydra.sweep.dir=/tmp/search1b \
  "$@" > /tmp/search1b.log 2>&1
echo "search exit $?"
grep -E '^max_seqlen' /tmp/search1b.log
cp /tmp/search1b/max_seqlen.json /tmp/search1b/summary.csv /tmp/search1b/summary.png "$OUT/" 2>/dev/null
cat "$OUT/max_seqlen.json"
