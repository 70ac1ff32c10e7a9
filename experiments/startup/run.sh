#!/usr/bin/env bash
# Start-up on one GPU: seconds from the command to the end of step 1 for the 1B shape at 8K, the 8B shape with ZeRO-3
# and LoRA at 8K (twice), and a 4-length multirun, with this checkout and (BASE=dir) an older one, interleaved on one
# machine.
#   BASE=/path/to/old/checkout bash experiments/startup/run.sh [out_dir]     (from the repository root)
# BASE holds an older commit's framework/ and conf/ (e.g. `git archive <commit> framework conf | tar -x -C dir`); its
# runs start from that directory with it first on PYTHONPATH. Without BASE only this checkout runs. Everything a run
# writes ends in one archive, <out_dir>/startup.tgz; the table comes last.
set -u
OUT=${1:-outputs/startup/$(date +%Y-%m-%d_%H%M%S)}
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
ROOT=$PWD
B1="+experiment=llama1b_1gpu data.seq_length=8192 train.max_steps=1"
B8="+experiment=llama8b_1gpu_lora data.seq_length=8192 engine.zero_stage=3 train.max_steps=1"
M="+experiment=llama1b_1gpu data.seq_length=8192,16384,32768,65536 train.max_steps=1"
one() {  # one <name> <tree> <overrides...>: <tree> is "." (this checkout) or $BASE
  local name=$1 tree=$2; shift 2
  echo "== $name ($tree): $*"
  (cd "$tree" && PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 300 python -m framework "$@" \
    hydra.run.dir="$OUT/runs/$name" > "$OUT/runs/$name.log" 2>&1; echo "   exit $?")
}
# a fresh machine compiles every module's bytecode and Liger's Triton kernels at their first use: done here, not counted
PYTORCH_NVML_BASED_CUDA_CHECK=1 python -c "import framework.preload, torch; print('cuda initialized by the preload:', torch.cuda.is_initialized())" 2>&1 | tail -1
[ -n "${BASE:-}" ] && (cd "$BASE" && PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python -c "import framework.preload" > /dev/null 2>&1)
one 0_warmup . $B1 > /dev/null
PYTORCH_NVML_BASED_CUDA_CHECK=1 PYTHONPYCACHEPREFIX=${FRAMEWORK_PYCACHE:-$HOME/.cache/framework/pycache} python -c "import time; t = time.time(); import torch, framework.preload; print(f'import floor (this checkout, its bytecode cache): {time.time() - t:.1f} s')" 2>&1 | grep "import floor"
for i in 1 2; do
  [ -n "${BASE:-}" ] && one 1b_base_$i "$BASE" $B1
  one 1b_$i . $B1
done
[ -n "${BASE:-}" ] && one 8b_lora_base "$BASE" $B8
one 8b_lora_1 . $B8  # after BASE's 8B run Liger's Triton kernels for the 8B shapes are compiled; without BASE this one compiles them
one 8b_lora_2 . $B8
echo "== multirun: $M"
timeout 400 python -m framework -m $M hydra.sweep.dir="$OUT/runs/multirun" > "$OUT/runs/multirun.log" 2>&1
echo "   exit $?"
python - "$OUT/runs" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
keys = ["validated_s", "worker_s", "model_s", "engine_s", "first_step_s"]
print(f"\n{'run':<28} {'status':>7} " + " ".join(f"{k[:-2]:>10}" for k in keys))
for res in sorted(glob.glob(os.path.join(out, "*", "result.json")) + glob.glob(os.path.join(out, "*", "*", "result.json"))):
    r = json.load(open(res)); s = r.get("startup") or {}
    t0 = s.get("job_started_s", 0.0)  # a multirun's later jobs: from the job's own start
    name = os.path.relpath(os.path.dirname(res), out)[:28]
    print(f"{name:<28} {r.get('status'):>7} " + " ".join(f"{s.get(k, float('nan')) - t0:>10.1f}" for k in keys))
PY
(cd "$OUT" && tar czf startup.tgz runs && rm -rf runs)
