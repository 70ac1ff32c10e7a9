"""The dataloader adapter: cuts each batch along the sequence for the SP ranks and adds `shift_labels`.

With sp_size > 1 this is DeepSpeed's UlyssesSPDataLoaderAdapter (every rank of the SP group loads a batch; the
group processes them in turn, each rank holding `s_local = s // sp_size` positions), with its exchange of the
batches made to work for batches of different lengths on every backend. With sp_size == 1 it only adds
`shift_labels`, so the model and the loss see the same keys either way.

With ring attention (cp_size > 1) the group is the cp_size x sp_size ranks that share a sequence, and each rank's
shard is `shard_row`'s: the zigzag chunks of its cp rank, then its sp rank's piece of them. A packed row (its
position_ids reset) is first put in the ring's per-document zigzag order (`ring_order`), and every rank gets the whole
permuted row's document ids as `ring_document_ids` `[b, s]`, which the model hands to the ring attention.
"""

import torch
import torch.distributed as dist
from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

from framework.attention.ring import document_permutation, zigzag_chunks
from framework.data.rows import IGNORE


def add_shift_labels(batch):
    labels = batch.pop("labels")
    batch["shift_labels"] = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].contiguous()
    return batch


def shard_row(t: torch.Tensor, *, seq_rank: int, sp_size: int, cp_size: int = 1) -> torch.Tensor:
    """This rank's positions of a `[b, s]` tensor. seq_rank = cp_rank x sp_size + sp_rank (the mesh's (cp, sp)
    order): cp rank c holds chunks c and 2 cp_size - 1 - c of 2 cp_size equal chunks (framework.attention.ring), and
    sp rank j the j-th of sp_size equal pieces of those. `s` must divide into 2 cp_size x sp_size pieces (cp > 1)."""
    cp_rank, sp_rank = divmod(seq_rank, sp_size)
    if cp_size > 1:
        chunks = t.chunk(2 * cp_size, dim=1)
        t = torch.cat([chunks[c] for c in zigzag_chunks(cp_rank, cp_size)], dim=1)
    n = t.shape[1] // sp_size
    return t[:, n * sp_rank : n * (sp_rank + 1)]


def ring_order(row, *, cp_size: int):
    """Put the packed rows of a `[b, s]` batch in the ring's per-document zigzag order (every tensor gathered the
    same way, shift_labels included, so each token keeps its label and position) and add `ring_document_ids`
    `[b, s]`. A batch whose rows never reset (one document each) is left as it is: the plain zigzag needs nothing."""
    pos = row["position_ids"]
    if not bool((pos[:, 1:] == 0).any()):
        return row
    perms, docs = zip(*(document_permutation(p, cp_size) for p in pos.cpu()))
    perm = torch.stack(perms).to(pos.device)
    for k, v in row.items():
        row[k] = torch.gather(v, 1, perm)
    row["ring_document_ids"] = torch.stack(docs).to(pos.device)
    return row


class UlyssesAdapter(UlyssesSPDataLoaderAdapter):
    """DeepSpeed's adapter, but each rank's batch reaches the group by a broadcast of its own shape.

    DeepSpeed all-gathers the batches into per-rank buffers of each rank's length; gloo (CPU) refuses an all-gather of
    unequal sizes, so with sp_seq_length_is_variable=true and unpacked rows of different lengths, a CPU run died.
    Everything else is DeepSpeed's: shift_labels from the whole row before sharding, shards kept on the CPU. With
    cp_size > 1 the group is the (cp, sp) ranks and the shards are shard_row's.
    """

    def __init__(self, *args, cp_size: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.cp_size = cp_size

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
            s, pieces = row["input_ids"].shape[1], self.sp_world_size * (2 if self.cp_size > 1 else 1)
            if s % pieces:
                raise ValueError(
                    f"a batch of {s} tokens does not split into {pieces} pieces (sp x cp ranks, 2 chunks per ring rank)"
                )
            add_shift_labels(row)
            if self.cp_size > 1:
                ring_order(row, cp_size=self.cp_size)
            sp_size = self.sp_world_size // self.cp_size
            self.micro_batches.append(
                {
                    k: (
                        v
                        if k == "ring_document_ids"
                        # the whole row: the ring's plan
                        else shard_row(v, seq_rank=self.sp_rank, sp_size=sp_size, cp_size=self.cp_size)
                    ).cpu()
                    for k, v in row.items()
                }
            )


class SPBatches:
    """Endless iterator of model-ready micro-batches (`[b, s_local]` tensors on `device`). sp_group / sp_rank /
    sp_size: the ranks sharing one sequence (with ring attention, the cp_size x sp_size (cp, sp) ranks)."""

    def __init__(self, dataloader, *, sp_group, sp_rank: int, sp_size: int, device, skip: int = 0, cp_size: int = 1):
        self.dl, self.device = dataloader, device
        if sp_size > 1:
            self.it = UlyssesAdapter(
                dataloader, sp_rank=sp_rank, sp_group=sp_group, sp_world_size=sp_size, device=device, cp_size=cp_size
            )
        else:
            self.it = (add_shift_labels(b) for b in dataloader)
        for _ in range(skip):  # resume inside an SP round: the sampler restarted at the round's first step
            next(self)

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self.it)  # the sampler never ends, so neither does this
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
