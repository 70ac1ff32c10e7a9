#!/usr/bin/env bash
# The planner beside measurement on one H200, Llama-3.2-1B shape (experiments/planner/README.md):
# 3 lengths x (attention recomputed, attention kept, tiled MLP + offloaded checkpoints), each planned (plan=true,
# no GPU work) then run for 2 steps; then the 256K run with `auto` and no flag (the issue's target).
#   bash experiments/planner/h200_1b.sh && python experiments/planner/compare.py outputs/planner
set -u
OUT=${OUT_DIR:-outputs/planner}
run() {  # name, overrides...
    local name=$1; shift
    python -m framework +experiment=llama1b_1gpu model.liger=true train.max_steps=2 "$@" plan=true \
        hydra.run.dir=$OUT/$name/plan
    python -m framework +experiment=llama1b_1gpu model.liger=true train.max_steps=2 "$@" hydra.run.dir=$OUT/$name/run
}
for n in 65536 131072 262144; do
    run ${n}_recompute data.seq_length=$n model.recompute_attention=true
    run ${n}_keep data.seq_length=$n model.recompute_attention=false
    run ${n}_tiled_offload data.seq_length=$n model.recompute_attention=true model.tiled_mlp=true \
        model.offload_activations=true
done
run 262144_auto data.seq_length=262144   # recompute_attention=auto (the experiment's default): no flag
