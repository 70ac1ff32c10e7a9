#!/usr/bin/env bash
# The GPU sweep whose summary.png shows how a sweep reads (issue 21): 1 x H200, the Llama-3.2-1B shape
# (+experiment=llama1b_1gpu), 4 lengths in one multirun, 2 steps each, tracker=wandb (offline: nothing is uploaded).
# Run from anywhere:   bash experiments/sweep_plot/run.sh          (about 6 minutes on 1 x H200)
# The longest length may run out of GPU memory: the plot then marks it (the sweep's exit status is 1 for that).
set -uo pipefail
cd "$(dirname "$0")/../.."
sweep=outputs/sweep_plot
rm -rf "$sweep"
python -m framework -m +experiment=llama1b_1gpu model.liger=true data.seq_length=32768,65536,131072,262144 train.max_steps=2 \
    tracker=wandb hydra.sweep.dir="$sweep"
status=$?
card=$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")
dest="experiments/sweep_plot/${card}x1_$(date +%F)"
mkdir -p "$dest"
cp "$sweep/summary.csv" "$sweep/summary.png" "$dest/"
ls "$sweep"/wandb/offline-run-*/files/media/table/*.table.json >/dev/null && echo "W&B summary run: $(ls -d "$sweep"/wandb/offline-run-*)"
echo "sweep exit status $status; summary copied to $dest"
