"""The eval group built (`_target_`): the held-out evaluation the step loop runs every `every` steps."""
import torch
import torch.distributed as dist


class Evaluator:
    """Token-weighted loss over `steps` held-out micro-batches (the same ones every time), sharded like training: SP
    and the ring stay on, so evaluation fits wherever training does. Built by
    hydra.utils.instantiate(cfg.eval, batches=...), `batches` a function returning a fresh iterator over them."""

    def __init__(self, *, batches=None, every: int = 0, steps: int = 2):
        self.batches, self.every, self.steps = batches, every, steps

    def due(self, step: int) -> bool:
        return bool(self.every) and self.batches is not None and step % self.every == 0

    def run(self, ds_engine) -> dict:
        """The step record's eval fields. All ranks must call this (the sums are reduced over every rank)."""
        batches = self.batches()
        loss_x_n = n_valid = 0.0
        ds_engine.eval()
        with torch.no_grad():
            for _ in range(self.steps):
                loss, n = ds_engine(**next(batches))
                loss_x_n += float(loss) * float(n)  # CPU-GPU sync point
                n_valid += float(n)
        ds_engine.train()
        t = torch.tensor([loss_x_n, n_valid], dtype=torch.float64, device=ds_engine.device)
        dist.all_reduce(t)  # every rank
        return {"eval_loss": t[0].item() / max(t[1].item(), 1)}
