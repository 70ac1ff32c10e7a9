#!/usr/bin/env bash
# Packed rows of many documents against unpacked rows, Llama-3.2-1B shape, 64K tokens, one GPU (one device call).
#   bash experiments/packed_vs_unpacked/bench_1gpu.sh        (project root, GPU machine, after .device/install.sh)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 experiments/packed_vs_unpacked/make_docs.py /tmp/docs.jsonl --tokens 700000 --min 256 --max 4096
if [ "${KERNELS:-1}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 experiments/attention_kernels/bench.py --packed 65536 > "$OUT/kernels_packed.log" 2>&1
  tail -8 "$OUT/kernels_packed.log"
fi
HF="data=hf data.path=/tmp/docs.jsonl data.packing=true data.seq_length=65536"
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240} bash experiments/alst_2gpu/bench.sh \
  "unpacked_sdpa|python3 -m framework +experiment=llama1b_1gpu hydra.run.dir=/tmp/bench/unpacked_sdpa" \
  "packed_sdpa_varlen|python3 -m framework +experiment=llama1b_1gpu $HF hydra.run.dir=/tmp/bench/packed_sdpa_varlen" \
  "packed_flex|python3 -m framework +experiment=llama1b_1gpu $HF attention=flex_attention hydra.run.dir=/tmp/bench/packed_flex" \
  "unpacked_sdpa_keep_attention|python3 -m framework +experiment=llama1b_1gpu model.recompute_attention=false hydra.run.dir=/tmp/bench/unpacked_sdpa_keep_attention"
