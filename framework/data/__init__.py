"""data: rows of token ids (synthetic or from HF datasets) → fixed-order DP/SP-sharded DataLoader.

Every batch the DataLoader yields is a dict of `[b, s]` int64 tensors: `input_ids`, `labels` (-100 where no loss),
`position_ids` (restarting at 0 at each document start when rows are packed). The SP adapter
(framework.data.adapter) then cuts `s` into `sp_size` shards and adds `shift_labels`.
"""
from dataclasses import dataclass, field
from typing import List, Optional

import torch

from framework.data.sampler import StepSampler
from framework.errors import ConfigError

IGNORE = -100


@dataclass
class DataConfig:
    _target_: str = "framework.data.build_dataloader"
    source: str = "synthetic"
    """synthetic (random tokens) or hf (HF datasets: a file, glob, directory or hub id)."""
    path: Optional[str] = None
    """For source=hf: a file, glob, directory, or hub id."""
    seq_length: int = 1024
    """Tokens per row (global, before SP sharding)."""
    lengths: List[int] = field(default_factory=list)
    """synthetic only: cycle through these row lengths instead of seq_length (needs sp_seq_length_is_variable)."""
    num_samples: int = 1024
    """synthetic only: rows in the dataset."""
    packing: bool = False
    """Concatenate documents into rows of seq_length; position_ids restart at each document."""
    shuffle: bool = True
    """Seeded shuffle of the row order (engine.seed), reshuffled each epoch."""
    text_field: str = "text"
    """Field holding raw text (rows with input_ids are used as they are)."""
    tokenizer: Optional[str] = None
    """Tokenizer directory or hub id. null: the model's directory."""
    truncation: bool = True
    """Unpacked rows: cut documents longer than seq_length (false: leave them out; all too long is an error)."""
    pad_to_seq_length: bool = False
    """Unpacked rows: pad every row to seq_length (else to a multiple of sp_size)."""
    num_proc: int = 1
    """Processes for tokenization (datasets.map)."""
    streaming: bool = False
    """Stream the corpus instead of loading it (for corpora that do not fit on disk)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    split: str = "train"
    """Split to read from a hub dataset or a saved DatasetDict."""
    cache_dir: Optional[str] = None
    """Where tokenized documents and HF datasets' own Arrow cache live. null: ~/.cache/framework/tokenized."""
    chat_template: Optional[str] = None
    """Jinja chat template for `messages` rows. null: the tokenizer's own."""
    add_eos: bool = True
    """Text rows: end every document with the tokenizer's EOS token (if it has one and did not add it)."""
    shuffle_buffer: int = 10000
    """streaming + shuffle: documents in the seeded shuffle buffer."""
    eval_path: Optional[str] = None
    """Held-out rows for engine.eval_every (data=hf): read like `path`. Synthetic data draws unseen rows instead."""


class SyntheticRows(torch.utils.data.Dataset):
    """Random tokens in [0, vocab_size): row i is a pure function of (seed, i), so every rank agrees."""

    def __init__(self, *, num_samples: int, lengths: List[int], vocab_size: int, seed: int):
        self.n, self.lengths, self.vocab, self.seed = num_samples, lengths, vocab_size, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        ids = torch.randint(0, self.vocab, (self.lengths[i % len(self.lengths)],), generator=g)
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(len(ids))}


def collate(rows, *, multiple_of: int, length: Optional[int] = None, pad_id: int = 0):
    """Stack rows right-padded to `length` (or the longest row rounded up to `multiple_of`). Pad labels are -100."""
    longest = max(len(r["input_ids"]) for r in rows)
    target = length or -(-longest // multiple_of) * multiple_of
    out = {"input_ids": [], "labels": [], "position_ids": []}
    for r in rows:
        pad = target - len(r["input_ids"])
        ids = torch.as_tensor(r["input_ids"], dtype=torch.long)
        labels = torch.as_tensor(r.get("labels", ids), dtype=torch.long)
        pos = torch.as_tensor(r["position_ids"], dtype=torch.long) if "position_ids" in r else torch.arange(len(ids))
        out["input_ids"].append(torch.nn.functional.pad(ids, (0, pad), value=pad_id))
        out["labels"].append(torch.nn.functional.pad(labels, (0, pad), value=IGNORE))
        # pad positions continue the last document so they form no new document of their own
        out["position_ids"].append(torch.cat([pos, pos[-1] + 1 + torch.arange(pad)]) if pad else pos)
    return {k: torch.stack(v) for k, v in out.items()}


def held_out_data(data_cfg):
    """The data config of the held-out rows (engine.eval_every): data.eval_path read like data.path, in a fixed
    order."""
    held_out = data_cfg.copy()
    held_out.path, held_out.shuffle = data_cfg.eval_path, False
    return held_out


def check(cfg):
    """Data rules that need the data itself (run by framework.validate before any worker starts).

    data=hf: loads and tokenizes the corpus once (filling the tokenization cache the workers then read), so a
    missing path, a broken row, an empty corpus, a missing field or tokenizer, or documents all too long stop the
    job here with one ConfigError. Also refuses attention implementations that cannot keep packed documents apart.
    """
    from framework.attention.packed import check as check_document_masking

    check_document_masking(cfg)
    d = cfg.data
    if d.source != "hf":
        return
    from framework.data.hf import build_hf_dataset
    from framework.validate import world_size

    tok = dict(tokenizer_path=d.tokenizer or cfg.model.name_or_path, seed=cfg.engine.seed,
               tokenizer_key="data.tokenizer" if d.tokenizer else "model.name_or_path")
    if cfg.engine.eval_every and d.eval_path:  # the held-out rows, tokenized (and cached) here too
        build_hf_dataset(held_out_data(d), **tok)
    dataset = build_hf_dataset(d, **tok)
    if d.streaming:
        next(iter(dataset.rows(0)), None)
        return
    p, e = cfg.parallelism, cfg.engine
    need = world_size(cfg) * e.micro_batch_size  # one micro-step of every DP replica for each SP rank
    if len(dataset) < need:
        raise ConfigError("data.path", d.path, f"gives {len(dataset)} rows of data.seq_length={d.seq_length}, fewer "
                          f"than one step needs ({need}: processes x micro_batch_size)",
                          "add data, lower data.seq_length or engine.micro_batch_size")
    if not d.packing and not d.pad_to_seq_length and p.sp_size > 1 and not p.sp_seq_length_is_variable:
        raise ConfigError("data.pad_to_seq_length", False, "unpacked rows vary in length, and "
                          "parallelism.sp_seq_length_is_variable=false needs them all of one length",
                          "set data.pad_to_seq_length=true, data.packing=true or "
                          "parallelism.sp_seq_length_is_variable=true")


def build_dataset(cfg, *, vocab_size: int, seed: int, tokenizer_path: Optional[str]):
    if cfg.source == "synthetic":
        return SyntheticRows(num_samples=cfg.num_samples, lengths=list(cfg.lengths) or [cfg.seq_length],
                             vocab_size=vocab_size, seed=seed)
    from framework.data.hf import build_hf_dataset

    return build_hf_dataset(cfg, tokenizer_path=tokenizer_path, seed=seed)


def build_dataloader(*, cfg, vocab_size: int, tokenizer_path: Optional[str], dp_rank: int, dp_size: int,
                     sp_rank: int, sp_size: int, micro_batch_size: int, seed: int, start_step: int = 0,
                     pad_id: int = 0):
    """The per-rank DataLoader (before SP sharding); see StepSampler for which rank reads what."""
    from functools import partial

    dataset = build_dataset(cfg, vocab_size=vocab_size, seed=seed, tokenizer_path=tokenizer_path)
    length = cfg.seq_length if (cfg.pad_to_seq_length or cfg.packing) and not cfg.lengths else None
    if isinstance(dataset, torch.utils.data.IterableDataset):  # streaming: the dataset itself picks this rank's rows
        dataset.assign(dp_rank=dp_rank, dp_size=dp_size, sp_rank=sp_rank, sp_size=sp_size,
                       micro_batch_size=micro_batch_size, seed=seed, start_step=start_step)
        return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=0,
                                           collate_fn=partial(collate, multiple_of=sp_size, length=length,
                                                              pad_id=pad_id))
    sampler = StepSampler(len(dataset), dp_rank=dp_rank, dp_size=dp_size, sp_rank=sp_rank, sp_size=sp_size,
                          micro_batch_size=micro_batch_size, seed=seed, shuffle=cfg.shuffle, start_step=start_step)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                                       collate_fn=partial(collate, multiple_of=sp_size, length=length, pad_id=pad_id))
