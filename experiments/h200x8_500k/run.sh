#!/usr/bin/env bash
# The headline command on 8 GPUs beside the peer (issue 19). Not run yet: 8-GPU machines were withheld.
# Run from the repo root on an 8-GPU node: bash experiments/h200x8_500k/run.sh   (about 30 minutes)
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
out=outputs/h200x8_500k
python -m framework +experiment=llama8b_500k parallelism.sp_size=8 plan=true hydra.run.dir=$out/plan
python -m framework +experiment=llama8b_500k parallelism.sp_size=8 train.max_steps=3 hydra.run.dir=$out/sp8
python -m framework +experiment=llama8b_500k parallelism.sp_size=4 parallelism.cp_size=2 train.max_steps=3 \
    hydra.run.dir=$out/sp4_cp2
python -m framework -m +experiment=llama8b_500k parallelism.sp_size=8 hydra/sweeper=max_seqlen hydra.sweep.dir=$out/search
# the peer (Accelerate's sequence-parallel recipe, --liger), same machine, same shape
torchrun --nproc_per_node 8 experiments/alst_2gpu/peer_recipe.py --arch 8b --seqlens 524288 --zero 3 --offload --liger --steps 2
