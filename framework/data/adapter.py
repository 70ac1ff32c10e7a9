"""The dataloader adapter: cuts each batch along the sequence for the SP ranks and adds `shift_labels`.

With sp_size > 1 this is DeepSpeed's UlyssesSPDataLoaderAdapter (every rank of the SP group loads a batch; the
group processes them in turn, each rank holding `s_local = s // sp_size` positions), with its exchange of the
batches made to work for batches of different lengths on every backend. With sp_size == 1 it only adds
`shift_labels`, so the model and the loss see the same keys either way.
"""
import torch
import torch.distributed as dist
from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

from framework.data.rows import IGNORE


def add_shift_labels(batch):
    labels = batch.pop("labels")
    batch["shift_labels"] = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].contiguous()
    return batch


class UlyssesAdapter(UlyssesSPDataLoaderAdapter):
    """DeepSpeed's adapter, but each rank's batch reaches the group by a broadcast of its own shape.

    DeepSpeed all-gathers the batches into per-rank buffers of each rank's length; gloo (CPU) refuses an all-gather of
    unequal sizes, so with sp_seq_length_is_variable=true and unpacked rows of different lengths, a CPU run died.
    Everything else is DeepSpeed's: shift_labels from the whole row before sharding, shards kept on the CPU.
    """

    def refill(self):
        batch = next(self.iter)  # the StepSampler is endless
        if "position_ids" not in batch:
            raise ValueError("Ulysses SP needs position_ids in every batch (the collate function adds them)")
        keys = sorted(k for k, v in batch.items() if torch.is_tensor(v))
        shape = torch.tensor(batch["input_ids"].shape, dtype=torch.int64, device=self.device)
        shapes = [torch.zeros_like(shape) for _ in range(self.sp_world_size)]
        dist.all_gather(shapes, shape, group=self.sp_group)  # every rank of the SP group
        ranks = dist.get_process_group_ranks(self.sp_group)
        for i, src in enumerate(ranks):  # batch of SP rank i, to every rank of the group
            row = {}
            for k in keys:
                if i == self.sp_rank:
                    t = batch[k].to(self.device).contiguous()
                else:
                    t = torch.empty(tuple(shapes[i].tolist()), dtype=batch[k].dtype, device=self.device)
                dist.broadcast(t, src=src, group=self.sp_group)  # every rank of the SP group, same order
                row[k] = t
            s = row["input_ids"].shape[1]
            if s % self.sp_world_size:
                raise ValueError(f"a batch of {s} tokens does not split into sp_size={self.sp_world_size} shards")
            chunk = s // self.sp_world_size
            add_shift_labels(row)
            self.micro_batches.append({k: v[:, chunk * self.sp_rank:chunk * (self.sp_rank + 1)].cpu()
                                       for k, v in row.items()})


class SPBatches:
    """Endless iterator of model-ready micro-batches (`[b, s_local]` tensors on `device`)."""

    def __init__(self, dataloader, *, sp_group, sp_rank: int, sp_size: int, device, skip: int = 0):
        self.dl, self.device = dataloader, device
        if sp_size > 1:
            self.it = UlyssesAdapter(dataloader, sp_rank=sp_rank, sp_group=sp_group, sp_world_size=sp_size,
                                     device=device)
        else:
            self.it = (add_shift_labels(b) for b in dataloader)
        for _ in range(skip):  # resume inside an SP round: the sampler restarted at the round's first step
            next(self)

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.it)  # the sampler never ends, so neither does this
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
