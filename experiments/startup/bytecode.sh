#!/usr/bin/env bash
# Start-up where PYTHONDONTWRITEBYTECODE is set and torch ships no bytecode (the GPU machines), in one call: the first
# command (it fills ~/.cache/framework/pycache), one process importing the workers' stack from that cache, the 8B LoRA
# ZeRO-3 command three times (the first compiles Liger's Triton kernels for the 8B's shapes), the 1B command, and the
# 1B command with the code before (BASE, as in run.sh); with py-spy on PATH, a sampling profile of a 2-step 8B run
# between the second and third 8B runs (as in the 2026-12-07 call).
#   BASE=/path/to/old/checkout bash experiments/startup/bytecode.sh <out_dir>      (about 4 minutes on one H100)
OUT=$1; mkdir -p $OUT/runs
B1="+experiment=llama1b_1gpu data.seq_length=8192 train.max_steps=1"
B8="+experiment=llama8b_1gpu_lora data.seq_length=8192 engine.zero_stage=3 train.max_steps=1"
export PYTORCH_NVML_BASED_CUDA_CHECK=1
echo "env: PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-unset}" | tee -a $OUT/summary.txt
one() { local name=$1 tree=$2; shift 2; (cd "$tree" && PYTHONPATH="$PWD:$PYTHONPATH" timeout 200 python -m framework "$@" hydra.run.dir=$OUT/runs/$name > $OUT/runs/$name.log 2>&1); grep -h "^startup\|^bytecode\|^step" $OUT/runs/$name.log | cut -c1-250 | sed "s/^/$name: /" | tee -a $OUT/summary.txt; }
one 0_first . $B1
PYTHONPYCACHEPREFIX=$HOME/.cache/framework/pycache python -c "import time; t = time.time(); import torch; t1 = time.time(); import framework.preload; print(f'floor with the cache: torch {t1 - t:.1f} s, all {time.time() - t:.1f} s')" 2>&1 | grep floor | tee -a $OUT/summary.txt
one 8b_a_coldtriton . $B8
one 8b_b . $B8
one 1b_a . $B1
if command -v py-spy > /dev/null; then
  timeout 200 py-spy record --subprocesses --idle -r 100 -f raw -o $OUT/spy_8b.raw -- python -m framework $B8 train.max_steps=2 hydra.run.dir=$OUT/runs/8b_spy_2steps > $OUT/runs/8b_spy.log 2>&1
fi
one 8b_c . $B8
[ -n "${BASE:-}" ] && one 1b_base "$BASE" $B1
cd $OUT && tar czf runs.tgz runs $(ls spy_8b.raw 2> /dev/null) && rm -rf runs spy_8b.raw
