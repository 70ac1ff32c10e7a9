"""Which sample each rank reads at each step: deterministic, seeded, DP-sharded and SP-aware, resumable."""

import torch


class StepSampler(torch.utils.data.Sampler):
    """Yields lists of sample indices (a batch sampler), forever, epoch after epoch.

    Under Ulysses SP every rank of an SP group loads a different batch and the group processes them one after the
    other (DeepSpeed's UlyssesSPDataLoaderAdapter takes batch j of the group at its j-th step). This sampler makes
    the global order the one a single process would see: at optimizer micro-step k, DP replica d processes samples
    `perm[(k*dp + d)*b : (k*dp + d + 1)*b]`, so rank (d, j) reads its i-th batch for step k = i*sp + j.

    `start_step` skips the micro-steps already done (resume). One epoch holds `num_samples // (dp*b)` micro-steps
    rounded down to a multiple of sp; the rest of an epoch is dropped; each epoch reshuffles with seed + epoch.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        dp_rank: int,
        dp_size: int,
        sp_rank: int,
        sp_size: int,
        micro_batch_size: int,
        seed: int,
        shuffle: bool,
        start_step: int = 0,
    ):
        self.n, self.dp_rank, self.dp, self.sp_rank, self.sp = num_samples, dp_rank, dp_size, sp_rank, sp_size
        self.b, self.seed, self.shuffle, self.start_step = micro_batch_size, seed, shuffle, start_step
        self.steps_per_epoch = (num_samples // (dp_size * micro_batch_size)) // sp_size * sp_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{num_samples} samples cannot feed one step of {dp_size} DP ranks x {sp_size} SP "
                f"ranks x micro batch {micro_batch_size}"
            )

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        step = self.start_step - self.start_step % self.sp  # whole SP rounds: the adapter consumes sp at a time
        while True:
            epoch, k0 = divmod(step, self.steps_per_epoch)
            perm = self.order(epoch)
            for k in range(k0 + self.sp_rank, self.steps_per_epoch, self.sp):
                first = (k * self.dp + self.dp_rank) * self.b
                yield perm[first : first + self.b]
            step = (epoch + 1) * self.steps_per_epoch

    def __len__(self):
        return self.steps_per_epoch // self.sp
