#!/usr/bin/env bash
# Does a model from random weights learn the long_range corpus at 16K on one GPU, and what does evaluation hold in GPU
# memory at 256K? Runs, at the same time on one GPU (each uses a few GiB and a fraction of the card), packed 16K rows
# of one long document and short ones (data.short_lengths), filler of 256 ids:
#   s64:    4 layers x 512, short documents of 32-64 tokens, lr 2e-3
#   s1k:    the same, short documents of 32-1,024 tokens
#   s4k:    the same, short documents of 32-4,096 tokens
#   s1k_2l: 2 layers x 256, short documents of 32-1,024 tokens, lr 3e-3
#   eval256k (EVAL256K=1): the 1B shape at 256K, one training step, then an evaluation with the default passkey cases
# and prints, per learning run, the first and last evaluation's loss by position and passkey accuracy, then the 256K
# job's training and evaluation peaks.
#   bash experiments/long_context_eval/learn.sh [out_dir]   (from the repository root; about 7 minutes on an H200)
# Knobs (environment): VARIANTS ("s64 s1k s4k s1k_2l": which to run), STEPS (4000), EVERY (250: steps between
# evaluations), SCHEDULE (cosine: optim.schedule), LIMIT_S (420, each run's wall-clock bound), EVAL256K=1.
set -u
OUT=${1:-outputs/long_context_eval/learn_$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
STEPS=${STEPS:-4000}; LIMIT_S=${LIMIT_S:-420}; EVERY=${EVERY:-250}; VARIANTS=${VARIANTS:-s64 s1k s4k s1k_2l}
S="model.activation_checkpointing=false loss.tiled=false model.arch.vocab_size=2048 data=long_range data.packing=true
   data.seq_length=16384 data.num_samples=1000000 train.max_steps=$STEPS eval.every=$EVERY eval.steps=8 eval.passkey=true
   eval.passkey_samples=2 optim.warmup_steps=50 optim.schedule=${SCHEDULE:-cosine} checkpoint.every=0 data.filler_vocab=256"
M4="model.arch.hidden_size=512 model.arch.intermediate_size=1536 model.arch.num_hidden_layers=4
    model.arch.num_attention_heads=8 model.arch.num_key_value_heads=8"
M2="model.arch.hidden_size=256 model.arch.intermediate_size=768 model.arch.num_hidden_layers=2
    model.arch.num_attention_heads=4 model.arch.num_key_value_heads=4"
job() {  # job <name> <overrides...>
  local name=$1; shift
  case " $VARIANTS eval256k " in *" $name "*) ;; *) return ;; esac
  timeout --signal=TERM "$LIMIT_S" python -m framework +experiment=llama1b_1gpu "$@" hydra.run.dir="$OUT/$name" \
      > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? ($(tail -1 "$OUT/$name.log" | cut -c1-160))"
}
job s64 $S $M4 data.short_lengths=[32,64] optim.lr=2e-3 &
job s1k $S $M4 data.short_lengths=[32,1024] optim.lr=2e-3 &
job s4k $S $M4 data.short_lengths=[32,4096] optim.lr=2e-3 &
job s1k_2l $S $M2 data.short_lengths=[32,1024] optim.lr=3e-3 &
[ "${EVAL256K:-0}" = 1 ] && job eval256k data.seq_length=262144 train.max_steps=1 eval.every=1 eval.steps=1 eval.passkey=true &
wait

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
k = lambda n: f"{n // 1024}K" if n >= 1024 else str(n)
for name in ("s64", "s1k", "s4k", "s1k_2l", "eval256k"):
    path = os.path.join(out, name, "metrics.jsonl")
    ms = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    ev = [m for m in ms if "eval_loss" in m]
    if not ev and not ms:
        continue
    if not ev:
        print(f"\n{name}: no evaluation recorded ({len(ms)} steps)")
        continue
    if name == "eval256k":
        m = ev[-1]
        print(f"\neval256k: training peak {m['peak_mem_gib']:.1f} GiB, evaluation peak {m.get('eval_peak_mem_gib', 0):.1f}"
              f" GiB; step {m['step_time_s']:.1f} s, eval {m['eval_s']:.1f} s, passkey {m.get('eval_passkey_s', 0):.1f} s")
        continue
    a, b = ev[0], ev[-1]
    print(f"\n{name}: training loss step 1 {ms[0]['loss']:.2f} -> step {ms[-1]['step']} {ms[-1]['loss']:.2f}")
    print(f"   {'positions':<14} {'step ' + str(a['step']):>10} {'step ' + str(b['step']):>10}")
    for x, y in zip(a["eval_loss_by_position"], b["eval_loss_by_position"]):
        if x[2] is not None and y[2] is not None:
            print(f"   {'[' + k(x[0]) + ',' + k(x[1]) + ')':<14} {x[2]:>10.3f} {y[2]:>10.3f}")
    acc = lambda e: e.get("eval_passkey_accuracy", float("nan"))
    print(f"   {'passkey acc':<14} {acc(a):>10.2f} {acc(b):>10.2f}")
PY
