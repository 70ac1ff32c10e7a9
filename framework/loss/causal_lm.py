"""The token-weighted causal-LM loss, aggregated across the SP ranks of one sequence; optionally tiled.

Each SP rank holds `s_local = s // sp_size` positions of the sequence and their `shift_labels`. The rank computes
the *sum* of cross-entropy over its valid (label != IGNORE) positions; an all-gather over the SP group collects every
rank's sum and count, and the loss is sum / count over the whole sequence, its gradient flowing through the rank's
own sum only (DeepSpeed sums gradients over the SP ranks). A rank with no valid token contributes nothing (its sum
is not even added, so a NaN there cannot leak).
"""

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from framework.builder import builds
from framework.loss.config import LossConfig

from framework.data.rows import IGNORE  # noqa: F401  (one constant: the label of a position without loss)


def aggregate(loss_sum: torch.Tensor, count: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-weighted mean over the ranks of `group` from each rank's (sum, valid count).

    Every rank returns the same value, sum of all sums / sum of all counts, but its gradient flows only into this
    rank's own `loss_sum`: DeepSpeed *sums* gradients over the SP ranks (it divides by the DP size only), so
    back-propagating the other ranks' terms as well (a differentiable all-gather, as in DeepSpeed's ALST example)
    would make every gradient sp_size times too large. A rank with no valid token adds nothing (a NaN in its sum
    cannot leak into the value or the gradient); its graph still reaches every parameter with a zero gradient.

    All ranks of `group` must call this (two all-gathers). Returns (loss, global valid count).
    """
    if group is None or dist.get_world_size(group) == 1:
        return loss_sum / count.clamp(min=1), count
    sums = [torch.empty_like(loss_sum) for _ in range(dist.get_world_size(group))]
    counts = [torch.empty_like(count) for _ in range(len(sums))]
    dist.all_gather(sums, loss_sum.detach().contiguous(), group=group)
    dist.all_gather(counts, count.detach().contiguous(), group=group)
    sums, counts = torch.stack(sums), torch.stack(counts)
    others = torch.ones_like(counts, dtype=torch.bool)
    others[dist.get_rank(group)] = False
    # torch.where, not multiplication by a 0/1 mask: NaN * 0 is NaN
    total = torch.where(others & (counts > 0), sums, torch.zeros_like(sums)).sum()
    total = total + torch.where(count > 0, loss_sum, torch.zeros_like(loss_sum))
    n = counts.sum()
    return total / n.clamp(min=1), n


def auto_tiles(s_local: int, vocab_size: int, budget_bytes: float = 2**30) -> int:
    """Tiles so one tile's fp32 logits stay under `budget_bytes`."""
    return max(1, math.ceil(s_local * vocab_size * 4 / budget_bytes))


class CausalLMLoss:
    """Computes the aggregated loss from the model's last hidden states and the LM head.

    `__call__(hidden [b, s_local, h], lm_head, shift_labels [b, s_local])` -> (loss, global valid tokens).
    """

    @builds(LossConfig)
    def __init__(self, *, cfg, sp_group=None, liger: bool = False):
        self.tiled, self.tiled_shards, self.sp_group, self.liger = cfg.tiled, cfg.tiled_shards, sp_group, liger

    def local_sum(self, hidden, lm_head, shift_labels, head_is_tied: bool = False):
        """Sum of CE over this rank's valid positions (fp32) and their count. head_is_tied: the LM head's weight is
        also the input embedding (see tiled_ce_sum)."""
        labels = shift_labels.reshape(-1)
        count = (labels != IGNORE).sum()
        if not self.tiled:
            logits = lm_head(hidden).float()
            return F.cross_entropy(
                logits.view(-1, logits.shape[-1]), labels, ignore_index=IGNORE, reduction="sum"
            ), count
        if self.liger:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            ce = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")
            return ce(lm_head.weight, hidden.reshape(-1, hidden.shape[-1]), labels, lm_head.bias), count
        return tiled_ce_sum(hidden, lm_head, shift_labels, self.tiled_shards, head_is_tied=head_is_tied), count

    def __call__(self, hidden, lm_head, shift_labels, head_is_tied: bool = False):
        loss_sum, count = self.local_sum(hidden, lm_head, shift_labels, head_is_tied)
        return aggregate(loss_sum, count, self.sp_group)

    def with_per_token(self, hidden, lm_head, shift_labels):
        """Evaluation (no gradient): the aggregated loss and global count as __call__ gives them, computed from this
        rank's per-token losses, which come back too: (loss, count, ce [b, s_local] fp32, argmax [b, s_local]).
        Tiled as the loss is (one tile's logits at a time when loss.tiled), so it costs no more memory than
        training's loss. All ranks of the SP group must call this (the aggregation's all-gathers)."""
        tiles = (self.tiled_shards or auto_tiles(shift_labels.numel(), lm_head.weight.shape[0])) if self.tiled else 1
        ce, argmax = per_token(hidden, lm_head, shift_labels, tiles)
        count = (shift_labels != IGNORE).sum()
        loss, n = aggregate(ce.sum(), count, self.sp_group)
        return loss, n, ce, argmax


@torch.no_grad()
def per_token(hidden, lm_head, shift_labels, tiles: int = 1):
    """Each position's cross-entropy (fp32, 0 where the label is IGNORE) and the argmax of its logits, both
    `[b, s_local]`, from `tiles` tiles along the sequence: one tile's `[b, s_local / tiles, vocab]` logits exist at a
    time. No gradient (evaluation)."""
    b, seqlen = shift_labels.shape
    ce = torch.zeros(b, seqlen, dtype=torch.float32, device=hidden.device)
    argmax = torch.zeros(b, seqlen, dtype=torch.long, device=hidden.device)
    step = math.ceil(seqlen / max(1, min(tiles, seqlen)))
    for lo in range(0, seqlen, step):
        logits = lm_head(hidden[:, lo : lo + step]).float()
        y = shift_labels[:, lo : lo + step]
        # flat [tokens, vocab], the class dimension last (as training's loss): cross_entropy over a transposed
        # [b, vocab, s] runs torch's spatial log-softmax, several times slower at a 128K vocabulary
        flat = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="none"
        )
        ce[:, lo : lo + step] = flat.view(y.shape)
        argmax[:, lo : lo + step] = logits.argmax(-1)
    return ce, argmax


def tiled_ce_sum(hidden, lm_head, shift_labels, shards: int, head_is_tied: bool = False):
    """CE sum over valid positions, computed tile by tile with DeepSpeed's `sequence_tiled_compute`: one tile's
    logits exist at a time, forward and backward (the backward recomputes a tile's logits, one extra LM-head matmul).

    DeepSpeed's TiledFusedLogitsLoss is not used: it computes the LM-head weight gradient inside forward at scale
    1.0 and only rescales the hidden-state gradient afterwards, so any loss scaling after it (the division by the
    global token count, gradient accumulation) would leave the head's gradient wrong.

    Each tile's backward adds to the head's gradient; DeepSpeed ZeRO reduces a parameter's gradient only once its
    `ds_grad_is_ready` is true, which sequence_tiled_compute sets at the last tile. A head tied to the input embedding
    gets more gradient later, from the embedding's backward, so then the flag stays false here and the caller
    (framework.engine.module.CausalLMWithLoss) sets it when the embedding's gradient arrives: one reduction of the
    whole gradient, where ZeRO would otherwise refuse a second one ("has already been reduced").
    """
    from deepspeed.runtime.sequence_parallel.ulysses_sp import sequence_tiled_compute

    vocab = lm_head.weight.shape[0]
    seqlen = hidden.shape[1]
    if shards <= 0:
        shards = auto_tiles(hidden.shape[0] * seqlen, vocab)
    shards = max(1, min(shards, seqlen))
    shards = math.ceil(seqlen / math.ceil(seqlen / shards))  # no empty tile at the end

    def loss_fn(x, y):
        logits = lm_head(x).float()
        return F.cross_entropy(logits.view(-1, vocab), y.reshape(-1), ignore_index=IGNORE, reduction="sum")

    params = list(lm_head.parameters())
    if head_is_tied:
        for p in params:
            p.ds_grad_is_ready = False
    return sequence_tiled_compute(
        loss_fn,
        seqlen,
        shards,
        kwargs_to_shard=dict(x=hidden, y=shift_labels),
        kwargs_to_pass={},
        grad_requiring_tensor_key="x",
        compute_params=[] if head_is_tied else params,
        output_unshard_dimension=0,
        output_reduction="sum",
    )
