#!/usr/bin/env bash
# One device call: the peer recipe and our runs, same card, same shapes, one after the other.
#   bash experiments/alst_2gpu/bench.sh "<name>|<command>" ...     (from the project root, on the GPU machine)
# Each command runs under `timeout $BENCH_TIMEOUT` (default 300 s). Logs go to /tmp/bench/<name>.log and, all
# together, to $OUT/bench.log; the last lines printed are a table of every run (ours from result.json, the peer's
# from its JSON lines).
set -u
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True PYTHONUNBUFFERED=1
mkdir -p /tmp/bench "${OUT:-/tmp/out}"
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/cards.txt"
for spec in "$@"; do
  name=${spec%%|*}; cmd=${spec#*|}
  echo "=== $name: $cmd" | tee -a "$OUT/bench.log"
  start=$(date +%s)
  timeout "${BENCH_TIMEOUT:-300}" bash -c "$cmd" > "/tmp/bench/$name.log" 2>&1
  rc=$?
  echo "=== $name rc=$rc wall=$(( $(date +%s) - start ))s" | tee -a "$OUT/bench.log"
  grep -E '^step |^\{|^\[ok\]|^\[oom\]|^\[failed\]|Error|error' "/tmp/bench/$name.log" | grep -v Warning | tail -25 >> "$OUT/bench.log"
done
python3 experiments/alst_2gpu/table.py /tmp/bench "$@" | tee "$OUT/table.md"
cat /tmp/bench/*/metrics.jsonl > "$OUT/metrics_all.jsonl" 2>/dev/null || true
touch "$OUT/bench.done"
