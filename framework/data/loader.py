"""The per-rank DataLoader: rows of token ids (synthetic or from HF datasets) in a fixed DP/SP-sharded order.

Every batch it yields is a dict of `[b, s]` int64 tensors: `input_ids`, `labels` (-100 where no loss),
`position_ids` (restarting at 0 at each document start when rows are packed). The SP adapter
(framework.data.adapter) then cuts `s` into `sp_size` shards and adds `shift_labels`.
"""

from typing import Optional

import torch

from framework.builder import builds
from framework.data.config import DataConfig
from framework.data.rows import SyntheticRows, collate
from framework.data.sampler import StepSampler


def held_out_data(data_cfg):
    """The data config of the held-out rows (eval.every): data.eval_path read like data.path, in a fixed
    order."""
    held_out = data_cfg.copy()
    held_out.path, held_out.shuffle = data_cfg.eval_path, False
    return held_out


@builds(DataConfig)
def synthetic(*, cfg, vocab_size: int, seed: int, tokenizer_path: Optional[str] = None, **loader):
    """data=synthetic: random tokens at the model's vocabulary, a function of (seed, row index)."""
    rows = SyntheticRows(
        num_samples=cfg.num_samples, lengths=list(cfg.lengths) or [cfg.seq_length], vocab_size=vocab_size, seed=seed
    )
    return build_dataloader(rows, cfg=cfg, seed=seed, **loader)


@builds(DataConfig)
def long_range(*, cfg, vocab_size: int, seed: int, tokenizer_path: Optional[str] = None, **loader):
    """data=long_range: generated rows with long-range structure to learn (copies and passkeys from a small filler
    range, framework.data.long_range), token ids only."""
    from framework.data.long_range import LongRangeRows

    rows = LongRangeRows(
        num_samples=cfg.num_samples,
        lengths=list(cfg.lengths) or [cfg.seq_length],
        vocab_size=vocab_size,
        seed=seed,
        filler_vocab=cfg.filler_vocab,
        packing=cfg.packing,
        short=tuple(cfg.short_lengths),
    )
    return build_dataloader(rows, cfg=cfg, seed=seed, **loader)


@builds(DataConfig)
def hf(*, cfg, vocab_size: int, seed: int, tokenizer_path: Optional[str], **loader):
    """data=hf: a corpus through HF datasets, tokenized (once, cached) by the model's or data.tokenizer's
    tokenizer."""
    from framework.data.hf import build_hf_dataset

    return build_dataloader(
        build_hf_dataset(cfg, tokenizer_path=tokenizer_path, seed=seed), cfg=cfg, seed=seed, **loader
    )


# what framework.data.config asks of an option's builder: does it read a corpus, are its rows token ids only
synthetic.reads_corpus, long_range.reads_corpus, hf.reads_corpus = False, False, True
synthetic.token_ids_only, long_range.token_ids_only, hf.token_ids_only = False, True, False


def build_dataloader(
    dataset,
    *,
    cfg,
    dp_rank: int,
    dp_size: int,
    sp_rank: int,
    sp_size: int,
    micro_batch_size: int,
    seed: int,
    start_step: int = 0,
    pad_id: int = 0,
    multiple_of: int = 0,
):
    """The per-rank DataLoader over `dataset` (before SP sharding); see StepSampler for which rank reads what. Rows
    are padded to a multiple of `multiple_of` tokens (0: sp_size; with ring attention 2 x cp x sp:
    framework.data.adapter's pieces)."""
    from functools import partial

    multiple_of = multiple_of or sp_size
    length = cfg.seq_length if (cfg.pad_to_seq_length or cfg.packing) and not cfg.lengths else None
    if isinstance(dataset, torch.utils.data.IterableDataset):  # streaming: the dataset itself picks this rank's rows
        dataset.assign(
            dp_rank=dp_rank,
            dp_size=dp_size,
            sp_rank=sp_rank,
            sp_size=sp_size,
            micro_batch_size=micro_batch_size,
            seed=seed,
            start_step=start_step,
        )
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            num_workers=0,
            collate_fn=partial(collate, multiple_of=multiple_of, length=length, pad_id=pad_id),
        )
    sampler = StepSampler(
        len(dataset),
        dp_rank=dp_rank,
        dp_size=dp_size,
        sp_rank=sp_rank,
        sp_size=sp_size,
        micro_batch_size=micro_batch_size,
        seed=seed,
        shuffle=cfg.shuffle,
        start_step=start_step,
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=partial(collate, multiple_of=multiple_of, length=length, pad_id=pad_id),
    )
