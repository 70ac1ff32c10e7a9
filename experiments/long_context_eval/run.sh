#!/usr/bin/env bash
# Long-context evaluation on one H200, everything in experiments/long_context_eval/README.md (about 13 minutes):
# what an evaluation costs beside a training step at 64K and 256K (cost.sh), then the learning runs on the long_range
# corpus from random weights at 16K and the 1B command at 256K with evaluation for its memory (learn.sh).
#   bash experiments/long_context_eval/run.sh [out_dir]          (from the repository root)
# Knobs (environment): SKIP_COST=1, SKIP_256K=1 (cost at 64K only, and no 256K job in learn.sh), and learn.sh's.
set -u
OUT=${1:-outputs/long_context_eval/$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
if [ "${SKIP_COST:-0}" != 1 ]; then
  SEQS=$([ "${SKIP_256K:-0}" = 1 ] && echo 65536 || echo "65536 262144") bash experiments/long_context_eval/cost.sh "$OUT/cost"
fi
EVAL256K=$([ "${SKIP_256K:-0}" = 1 ] && echo 0 || echo 1) bash experiments/long_context_eval/learn.sh "$OUT/learn"
