#!/usr/bin/env bash
# A sequence-length sweep (Hydra multirun) of the Llama-3.2-1B shape on one GPU; summary.csv/png land in $OUT.
#   bash experiments/seqlen_sweep/sweep_1b.sh [extra overrides]   (project root, GPU machine, after .device/install.sh)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
python3 -m framework -m +experiment=llama1b_1gpu data.seq_length=16384,32768,65536,131072 engine.max_steps=3 \
  hydra.sweep.dir=/tmp/sweep1b "$@" > /tmp/sweep1b.log 2>&1
echo "sweep exit $?"
grep -E '^\[ok\]|^\[oom\]|^\[failed\]|^step' /tmp/sweep1b.log | tail -20
cp /tmp/sweep1b/summary.csv /tmp/sweep1b/summary.png "$OUT/" && cat "$OUT/summary.csv"
