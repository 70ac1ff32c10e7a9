#!/usr/bin/env bash
# Start-up where PYTHONDONTWRITEBYTECODE is set and torch ships no bytecode (the GPU machines): the first command
# (which fills ~/.cache/framework/pycache), one process importing the workers' stack from that cache, then the 1B and
# 8B LoRA ZeRO-3 commands with it, and the 1B command with the code before (BASE, as in run.sh), in one call.
#   BASE=/path/to/old/checkout bash experiments/startup/bytecode.sh <out_dir>      (about 2 minutes on one H100)
OUT=$1; mkdir -p $OUT/runs
ROOT=$PWD
B1="+experiment=llama1b_1gpu data.seq_length=8192 train.max_steps=1"
B8="+experiment=llama8b_1gpu_lora data.seq_length=8192 engine.zero_stage=3 train.max_steps=1"
echo "env: PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE:-unset}" | tee -a $OUT/summary.txt
one() { local name=$1 tree=$2; shift 2; (cd "$tree" && PYTHONPATH="$PWD:$PYTHONPATH" timeout 120 python -m framework "$@" hydra.run.dir=$OUT/runs/$name > $OUT/runs/$name.log 2>&1); grep -h "^startup\|^bytecode" $OUT/runs/$name.log | sed "s/^/$name: /" | tee -a $OUT/summary.txt; }
one 1b_first . $B1
PYTHONPYCACHEPREFIX=$HOME/.cache/framework/pycache python -c "import time; t = time.time(); import torch; t1 = time.time(); import framework.preload; print(f'floor with the cache: torch {t1 - t:.1f} s, all {time.time() - t:.1f} s')" 2>&1 | grep floor | tee -a $OUT/summary.txt
one 1b_cached . $B1
one 8b_cached . $B8
[ -n "${BASE:-}" ] && one 1b_base "$BASE" $B1
cd $OUT && tar czf runs.tgz runs && rm -rf runs
