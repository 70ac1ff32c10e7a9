#!/usr/bin/env bash
# Does a model from random weights learn the long_range corpus at 16K on one GPU, and what does evaluation hold in GPU
# memory at 256K? Runs, at the same time on one GPU (each small run uses a few GiB and a fraction of the card), packed
# 16K rows of one long document and short ones (the corpus' defaults: 32-64 tokens, filler of 256 ids), constant lr after
# 50 warm-up steps, each a variant below:
#   tiny:    2 layers x 128 (4 heads of 32), lr 3e-3
#   tiny3:   3 layers x 128, lr 3e-3
#   small:   2 layers x 256 (4 heads of 64), lr 3e-3
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
S="model.activation_checkpointing=false loss.tiled=false model.arch.vocab_size=2048 data=long_range data.packing=true
   data.seq_length=16384 data.num_samples=1000000 train.max_steps=$STEPS eval.every=$EVERY eval.steps=8 eval.passkey=true
   eval.passkey_samples=${SAMPLES:-4} eval.passkey_lengths=${PK_LENGTHS:-[64,256,1024,16384]} optim.warmup_steps=50 optim.schedule=${SCHEDULE:-constant} checkpoint.every=0"
arch() {  # arch <layers> <hidden> <heads>
  echo "model.arch.num_hidden_layers=$1 model.arch.hidden_size=$2 model.arch.intermediate_size=$((3 * $2))
        model.arch.num_attention_heads=$3 model.arch.num_key_value_heads=$3"
}
job() {  # job <name> <overrides...>
  local name=$1; shift
  case " $VARIANTS eval256k " in *" $name "*) ;; *) return ;; esac
  timeout --signal=TERM "$LIMIT_S" python -m framework +experiment=llama1b_1gpu "$@" hydra.run.dir="$OUT/$name" \
      > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? ($(tail -1 "$OUT/$name.log" | cut -c1-160))"
}
job tiny $S $(arch 2 128 4) optim.lr=3e-3 &
job tiny3 $S $(arch 3 128 4) optim.lr=3e-3 &
job small $S $(arch 2 256 4) optim.lr=3e-3 &
job tiny32k $S $(arch 2 128 4) optim.lr=3e-3 data.seq_length=32768 &
[ "${EVAL256K:-0}" = 1 ] && job eval256k data.seq_length=262144 train.max_steps=2 eval.every=2 eval.steps=1 eval.passkey=true &
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

    def logprob(step):  # the passkey answers' mean log-probability (4 x ln 1/10 = -9.2: a guess among the digits)
        path = os.path.join(out, name, "eval", f"passkey_step_{step}.jsonl")
        cases = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
        return sum(c["answer_logprob"] for c in cases) / max(1, len(cases))

    print(f"   {'answer logp':<14} " + " ".join(f"{logprob(e['step']):>10.2f}" for e in cols))

    def by_length(step):  # {length: (correct, cases)}
        path = os.path.join(out, name, "eval", f"passkey_step_{step}.jsonl")
        got = {}
        for c in (json.loads(l) for l in open(path)) if os.path.exists(path) else []:
            n = got.setdefault(c["length"], [0, 0])
            n[0], n[1] = n[0] + c["correct"], n[1] + 1
        return got

    for length in sorted(by_length(b["step"])):
        print(f"   {'acc at ' + k(length):<14} "
              + " ".join(f"{'%d/%d' % tuple(by_length(e['step']).get(length, (0, 0))):>10}" for e in cols))
PY
