#!/usr/bin/env bash
# Does a model from random weights learn the long_range corpus at 16K on one GPU, and what does evaluation hold in GPU
# memory at 256K? Runs, at the same time on one GPU (each small run uses a few GiB and a fraction of the card),
# +experiment=long_range_1gpu (packed 16K rows of one long document and short ones of 32-64 tokens, filler of 256 ids,
# lr 3e-3 constant after 50 warm-up steps) with the model of each variant below:
#   tiny:    2 layers x 128 (4 heads of 32)
#   tiny3:   3 layers x 128 (the experiment's own)
#   small:   2 layers x 256 (4 heads of 64)
#   tiny32k: tiny at 32K
#   eval256k (EVAL256K=1): the 1B shape at 256K, two training steps (the first has no Adam moments yet), then an
#             evaluation with the default passkey cases
# and prints, per learning run, the first and last evaluation's loss by position and passkey accuracy, then the 256K
# job's training and evaluation peaks.
#   bash experiments/long_context_eval/learn.sh [out_dir]   (from the repository root; about 9 minutes on an H200)
# Knobs (environment): VARIANTS ("tiny tiny3 small tiny32k": which to run), STEPS (20000), EVERY (500: steps between
# evaluations), SCHEDULE (constant: optim.schedule), LIMIT_S (500, each run's wall-clock bound), EVAL256K=1,
# PK_LENGTHS ([64,256,1024,16384]: the passkey contexts, from a short document's length to the row's), SAMPLES (4 keys a
# cell: 12 cases a length).
set -u
OUT=${1:-outputs/long_context_eval/learn_$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
STEPS=${STEPS:-20000}; LIMIT_S=${LIMIT_S:-500}; EVERY=${EVERY:-500}; VARIANTS=${VARIANTS:-tiny tiny3 small tiny32k}
S="+experiment=long_range_1gpu train.max_steps=$STEPS eval.every=$EVERY eval.passkey_samples=${SAMPLES:-4}
   eval.passkey_lengths=${PK_LENGTHS:-[64,256,1024,16384]} optim.schedule=${SCHEDULE:-constant}"
arch() {  # arch <layers> <hidden> <heads>
  echo "model.arch.num_hidden_layers=$1 model.arch.hidden_size=$2 model.arch.intermediate_size=$((3 * $2))
        model.arch.num_attention_heads=$3 model.arch.num_key_value_heads=$3"
}
job() {  # job <name> <overrides...>
  local name=$1; shift
  case " $VARIANTS eval256k " in *" $name "*) ;; *) return ;; esac
  timeout --signal=TERM "$LIMIT_S" python -m framework "$@" hydra.run.dir="$OUT/$name" \
      > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? ($(tail -1 "$OUT/$name.log" | cut -c1-160))"
}
job tiny $S $(arch 2 128 4) &
job tiny3 $S &
job small $S $(arch 2 256 4) &
job tiny32k $S $(arch 2 128 4) data.seq_length=32768 &
[ "${EVAL256K:-0}" = 1 ] && job eval256k +experiment=llama1b_1gpu data.seq_length=262144 train.max_steps=2 eval.every=2 eval.steps=1 eval.passkey=true &
wait

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
k = lambda n: f"{n // 1024}K" if n >= 1024 else str(n)
for name in sorted(os.listdir(out)):
    path = os.path.join(out, name, "metrics.jsonl")
    ms = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    ev = [m for m in ms if "eval_loss" in m]
    if not ms:
        continue
    if name == "eval256k":
        for m in ms:
            print(f"\neval256k step {m['step']}: training peak {m['peak_mem_gib']:.1f} GiB, step {m['step_time_s']:.1f} s"
                  + (f", evaluation peak {m['eval_peak_mem_gib']:.1f} GiB" if "eval_peak_mem_gib" in m else ""))
        continue
    if not ev:
        print(f"\n{name}: no evaluation recorded ({len(ms)} steps)")
        continue
    a, b = ev[0], ev[-1]
    print(f"\n{name}: training loss step 1 {ms[0]['loss']:.2f} -> step {ms[-1]['step']} {ms[-1]['loss']:.2f}"
          f" ({ms[-1]['step_time_s']:.3f} s a step)")
    cols = ev[:: max(1, len(ev) // 6)]  # about six evaluations, and the last
    cols += [b] if cols[-1] is not b else []
    print(f"   {'positions':<14} " + " ".join(f"{'step ' + str(e['step']):>10}" for e in cols))
    for i, x in enumerate(a["eval_loss_by_position"]):
        if all(e["eval_loss_by_position"][i][2] is not None for e in cols):
            print(f"   {'[' + k(x[0]) + ',' + k(x[1]) + ')':<14} "
                  + " ".join(f"{e['eval_loss_by_position'][i][2]:>10.3f}" for e in cols))
    print(f"   {'passkey acc':<14} " + " ".join(f"{e.get('eval_passkey_accuracy', float('nan')):>10.2f}" for e in cols))

    def passkeys(step):  # the evaluation's passkey cases
        path = os.path.join(out, name, "eval", f"passkey_step_{step}.jsonl")
        return [json.loads(l) for l in open(path)] if os.path.exists(path) else []

    cases = [passkeys(e["step"]) for e in cols]
    # the answers' mean log-probability (4 x ln 1/10 = -9.2: a guess among the digits)
    print(f"   {'answer logp':<14} "
          + " ".join(f"{sum(c['answer_logprob'] for c in cs) / max(1, len(cs)):>10.2f}" for cs in cases))
    for length in sorted({c["length"] for c in cases[-1]}):
        at = [[c["correct"] for c in cs if c["length"] == length] for cs in cases]
        print(f"   {'acc at ' + k(length):<14} " + " ".join(f"{'%d/%d' % (sum(a), len(a)):>10}" for a in at))
PY
