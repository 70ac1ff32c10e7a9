#!/usr/bin/env bash
# What an evaluation costs beside a training step, piece by piece (probe.py), Llama-3.2-1B shape on one GPU at 64K
# and 256K tokens; prints one JSON line per length and a table last.
#   bash experiments/long_context_eval/cost.sh [out_dir]          (from the repository root; about 6 minutes on an H200)
set -u
OUT=${1:-outputs/long_context_eval/cost_$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
for seq in ${SEQS:-65536 262144}; do
  echo "== $seq"
  if [ "$seq" -gt 131072 ]; then export PROBE_STEPS=2 PROBE_REPEAT=1; else export PROBE_STEPS=3 PROBE_REPEAT=3; fi
  timeout 420 python experiments/long_context_eval/probe.py "$OUT/cost_$seq.json" +experiment=llama1b_1gpu \
      data.seq_length=$seq > "$OUT/cost_$seq.log" 2>&1
  echo "   exit $? ($(tail -1 "$OUT/cost_$seq.log" | cut -c1-200))"
done
python - "$OUT" <<'PY'
import glob, json, sys
print(f"{'seq':>7} {'step s':>7} {'train fwd s':>11} {'plain eval s':>12} {'per-token s':>11} {'held-out s':>10} "
      f"{'held-out/plain':>14} {'passkey s':>9} {'passkey/step':>12} {'train peak GiB':>14} {'eval peak GiB':>13}")
for path in sorted(glob.glob(f"{sys.argv[1]}/cost_*.json"), key=lambda p: int(p.split("_")[-1][:-5])):
    r = json.load(open(path))
    print(f"{r['seq_length']:>7} {r['step_s']:>7.2f} {r['train_forward_s']:>11.2f} {r['plain_s']:>12.3f} "
          f"{r['per_token_s']:>11.3f} {r['held_out_s']:>10.3f} {r['held_out_over_plain']:>14.3f} {r['passkey_s']:>9.2f} "
          f"{r['passkey_over_step']:>12.2f} {r.get('train_peak_gib') or 0:>14.1f} {r.get('eval_peak_gib') or 0:>13.1f}")
PY
