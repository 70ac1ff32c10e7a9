#!/usr/bin/env bash
# Start-up on one GPU: seconds from the command to the end of step 1, before (workers spawned, each importing torch,
# transformers and DeepSpeed: FRAMEWORK_FORKSERVER=0) and after (workers forked from a server that imported them while
# the command validated), for the 1B shape at 8K, the 8B shape with ZeRO-3 and LoRA at 8K, and a 4-length multirun.
#   bash experiments/startup/run.sh [out_dir]          (from the repository root; about 6 minutes on one H200)
# Knobs (environment): SKIP_BEFORE=1 (only the forked workers), SKIP_8B_BEFORE=1, SKIP_MULTIRUN=1, REPEAT_1B=1 (the
# 1B command once more, last).
set -u
OUT=${1:-outputs/startup/$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT"
one() {  # one <name> <env> <overrides...>
  local name=$1 env=$2; shift 2
  echo "== $name ($env): $*"
  env $env timeout 300 python -m framework "$@" hydra.run.dir="$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "   exit $?"
}
sweep() {  # sweep <name> <env> <overrides...>
  local name=$1 env=$2; shift 2
  echo "== $name ($env): $*"
  env $env timeout 400 python -m framework -m "$@" hydra.sweep.dir="$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "   exit $?"
}
B1="+experiment=llama1b_1gpu data.seq_length=8192 train.max_steps=1"
B8="+experiment=llama8b_1gpu_lora data.seq_length=8192 engine.zero_stage=3 train.max_steps=1"
M="+experiment=llama1b_1gpu data.seq_length=8192,16384,32768,65536 train.max_steps=1"
# a fresh machine compiles every module's bytecode at its first import: done once here, for both codes, not counted
PYTORCH_NVML_BASED_CUDA_CHECK=1 python -c "import framework.preload, torch; print('cuda initialized by the preload:', torch.cuda.is_initialized())" 2>&1 | tail -1
for i in 1 2; do  # the floor: one process importing the worker's stack, twice
  python -c "import time; t = time.time(); import torch, framework.preload; print(f'import floor $i: {time.time() - t:.1f} s')" 2>&1 | grep "import floor"
done
[ "${SKIP_BEFORE:-0}" = 1 ] || one 1b_before FRAMEWORK_FORKSERVER=0 $B1
one 1b_after FRAMEWORK_FORKSERVER=1 $B1
[ "${SKIP_BEFORE:-0}${SKIP_8B_BEFORE:-0}" = 00 ] && one 8b_lora_before FRAMEWORK_FORKSERVER=0 $B8
one 8b_lora_after FRAMEWORK_FORKSERVER=1 $B8
[ "${SKIP_BEFORE:-0}${SKIP_MULTIRUN:-0}" = 00 ] && sweep multirun_before FRAMEWORK_FORKSERVER=0 $M
[ "${SKIP_MULTIRUN:-0}" = 1 ] || sweep multirun_after FRAMEWORK_FORKSERVER=1 $M
[ "${REPEAT_1B:-0}" = 1 ] && one 1b_after_again FRAMEWORK_FORKSERVER=1 $B1
python - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
keys = ["validated_s", "worker_s", "model_s", "engine_s", "first_step_s"]
print(f"\n{'run':<34} {'status':>7} " + " ".join(f"{k[:-2]:>10}" for k in keys) + f" {'job->step1':>10}")
for res in sorted(glob.glob(os.path.join(out, "*", "result.json")) + glob.glob(os.path.join(out, "*", "*", "result.json"))):
    r = json.load(open(res)); s = r.get("startup") or {}
    t0 = s.get("job_started_s", 0.0)
    name = os.path.relpath(os.path.dirname(res), out)[:34]
    print(f"{name:<34} {r.get('status'):>7} " + " ".join(f"{s.get(k, float('nan')) - t0:>10.1f}" for k in keys)
          + f" {s.get('first_step_s', float('nan')) - t0:>10.1f}")
PY
