#!/usr/bin/env bash
# 1M tokens on two H200s, and 64K / 256K beside the peer (issue 20). Not run yet: 2-GPU machines were withheld.
# Run from the repo root on a 2-GPU node: bash experiments/h200x2_1m/run.sh
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
out=outputs/h200x2_1m
python -m framework +experiment=llama8b_2gpu_long data.seq_length=1048576 model.offload_keep_layers=auto plan=true \
    hydra.run.dir=$out/plan_full
python -m framework +experiment=llama8b_2gpu_long data.seq_length=1048576 model.offload_keep_layers=auto \
    model.lora.r=16 engine.offload_optimizer=false engine.super_offload=false train.max_steps=1 hydra.run.dir=$out/lora_1m
python -m framework +experiment=llama8b_2gpu_long data.seq_length=917504 model.offload_keep_layers=auto \
    train.max_steps=1 hydra.run.dir=$out/full_896k
python -m framework +experiment=llama8b_2gpu_64k train.max_steps=3 hydra.run.dir=$out/64k
python -m framework +experiment=llama8b_2gpu_long train.max_steps=3 hydra.run.dir=$out/256k
torchrun --nproc_per_node 2 experiments/alst_2gpu/peer_recipe.py --arch 8b --seqlens 65536 --zero 3 --offload --liger --steps 2
torchrun --nproc_per_node 2 experiments/alst_2gpu/peer_recipe.py --arch 8b --seqlens 262144 --zero 3 --offload --liger --steps 2
