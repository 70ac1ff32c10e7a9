#!/usr/bin/env bash
# Long-context evaluation on one H200 (about 8 minutes): what an evaluation with loss by position and with the
# default passkey cases costs beside a training step (Llama-3.2-1B shape, random weights, 64K and 256K tokens), and
# the learnable corpus (data=long_range) from random weights at 16K, evaluated every few steps, for the pictures.
#   bash experiments/long_context_eval/run.sh [out_dir]          (from the repository root)
# Knobs (environment): LEARN_SEQ (16384), LEARN_STEPS (150), LEARN_EVERY (25), LEARN_LR (1e-3), SKIP_256K=1.
set -u
OUT=${1:-outputs/long_context_eval/$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
LEARN_SEQ=${LEARN_SEQ:-16384}; LEARN_STEPS=${LEARN_STEPS:-150}; LEARN_EVERY=${LEARN_EVERY:-25}
LEARN_LR=${LEARN_LR:-1e-3}

job() {  # job <name> <seconds> <overrides...>: one run, bounded, its outcome in $OUT/<name>/result.json
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout --signal=TERM "$limit" python -m framework "$@" hydra.run.dir="$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "   exit $? ($(tail -1 "$OUT/$name.log" | cut -c1-160))"
}

# 1. cost: 3 training steps, then one evaluation (held-out row with loss by position; the default passkey cases:
#    seq_length x 1/8, 1/4, 1/2, 1 at depths 0.1, 0.5, 0.9, one key each) after step 3
COST="+experiment=llama1b_1gpu eval.every=3 eval.steps=1 eval.passkey=true train.max_steps=3"
job cost_64k 150 $COST data.seq_length=65536
[ "${SKIP_256K:-0}" = 1 ] || job cost_256k 270 $COST data.seq_length=262144 train.max_steps=2 eval.every=2

# 2. learning: the long_range corpus from random weights; loss by position and the passkey heatmap every LEARN_EVERY
job learn_long_range 300 +experiment=llama1b_1gpu data=long_range data.seq_length=$LEARN_SEQ \
    train.max_steps=$LEARN_STEPS eval.every=$LEARN_EVERY eval.steps=2 eval.passkey=true eval.passkey_samples=2 \
    optim.lr=$LEARN_LR optim.warmup_steps=10

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"\nresults in {out} (eval/loss_by_position.png and eval/passkey_step_N.png in each run directory)")
print(f"{'run':<18} {'seq':>7} {'status':>7} {'step s':>7} {'fwd s':>6} {'eval s/row':>10} {'eval/fwd':>8} "
      f"{'passkey s':>9} {'pk/step':>7} {'eval loss':>9} {'passkey acc':>11}")
for name in ("cost_64k", "cost_256k", "learn_long_range"):
    d = os.path.join(out, name)
    res = json.load(open(os.path.join(d, "result.json"))) if os.path.exists(os.path.join(d, "result.json")) else {}
    ms = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))] if os.path.exists(
        os.path.join(d, "metrics.jsonl")) else []
    ev = [m for m in ms if "eval_loss" in m]
    steady = [m["step_time_s"] for m in ms[1:]] or [m["step_time_s"] for m in ms] or [float("nan")]
    fwd = [m["forward_s"] for m in ms[1:]] or [m["forward_s"] for m in ms] or [float("nan")]
    step_s, fwd_s = sum(steady) / len(steady), sum(fwd) / len(fwd)
    e = ev[-1] if ev else {}
    rows = 1 if name.startswith("cost") else 2
    per_row = e.get("eval_s", float("nan")) / rows
    pk = e.get("eval_passkey_s", float("nan"))
    print(f"{name:<18} {res.get('seq_length', '-'):>7} {res.get('status', 'none'):>7} {step_s:>7.2f} {fwd_s:>6.2f} "
          f"{per_row:>10.2f} {per_row / fwd_s:>8.2f} {pk:>9.1f} {pk / step_s:>7.2f} {e.get('eval_loss', float('nan')):>9.4f} "
          f"{e.get('eval_passkey_accuracy', float('nan')):>11.2f}")
    if name == "learn_long_range" and ev:
        first, last = ev[0]["eval_loss_by_position"], ev[-1]["eval_loss_by_position"]
        print(f"   loss by position, step {ev[0]['step']} -> {ev[-1]['step']}: " + ", ".join(
            f"[{a[0]},{a[1]}) {a[2]:.2f}->{b[2]:.2f}" for a, b in zip(first, last) if a[2] is not None and b[2] is not None))
PY
