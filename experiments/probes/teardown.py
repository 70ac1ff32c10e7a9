"""Does tearing down an NCCL process group wait for a collective the other rank never joins? (the 448K hang)
    torchrun --nproc_per_node 2 experiments/probes/teardown.py
Rank 0 starts an all_reduce that rank 1 never joins, then calls destroy_process_group(), as launch.worker's
`finally` did after an OOM; a watchdog thread reports how long it waited. Rank 1 sleeps, as a rank waiting in a
collective of its own does."""

import os
import threading
import time

import torch
import torch.distributed as dist

dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(rank)
dist.barrier()
if rank == 0:
    dist.all_reduce(torch.ones(1, device="cuda"), async_op=True)
    t0 = time.monotonic()

    def watchdog():
        time.sleep(45)
        print(f"rank 0: destroy_process_group() still waiting after {time.monotonic() - t0:.0f} s", flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    dist.destroy_process_group()
    print(f"rank 0: destroy_process_group() returned after {time.monotonic() - t0:.1f} s", flush=True)
else:
    time.sleep(60)
    print("rank 1: done sleeping", flush=True)
    os._exit(0)
