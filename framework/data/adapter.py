"""The dataloader adapter: cuts each batch along the sequence for the SP ranks and adds `shift_labels`.

With sp_size > 1 this is DeepSpeed's UlyssesSPDataLoaderAdapter (every rank of the SP group loads a batch; the
group processes them in turn, each rank holding `s_local = s // sp_size` positions). With sp_size == 1 it only adds
`shift_labels`, so the model and the loss see the same keys either way.
"""
import torch

from framework.data import IGNORE


def add_shift_labels(batch):
    labels = batch.pop("labels")
    batch["shift_labels"] = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].contiguous()
    return batch


class SPBatches:
    """Endless iterator of model-ready micro-batches (`[b, s_local]` tensors on `device`)."""

    def __init__(self, dataloader, *, sp_group, sp_rank: int, sp_size: int, device, skip: int = 0):
        self.dl, self.device = dataloader, device
        if sp_size > 1:
            from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

            self.it = UlyssesSPDataLoaderAdapter(dataloader, sp_rank=sp_rank, sp_group=sp_group,
                                                 sp_world_size=sp_size, device=device)
        else:
            self.it = (add_shift_labels(b) for b in dataloader)
        for _ in range(skip):  # resume inside an SP round: the sampler restarted at the round's first step
            next(self)

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.it)  # the sampler never ends, so neither does this
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
