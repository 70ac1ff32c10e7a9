"""data's config: where the rows come from, how long they are, and how they are packed and ordered."""

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class DataConfig:
    _target_: str = "framework.data.loader.synthetic"
    """The option's builder: framework.data.loader.synthetic (random tokens) or framework.data.loader.hf (HF
    datasets); conf/data/<option>.yaml names it. A new source is a YAML file and a builder."""
    path: Optional[str] = None
    """For data=hf: a file, glob, directory, or hub id."""
    seq_length: int = 1024
    """Tokens per row (global, before SP sharding)."""
    lengths: List[int] = field(default_factory=list)
    """synthetic and long_range: cycle through these row lengths instead of seq_length (needs
    sp_seq_length_is_variable)."""
    num_samples: int = 1024
    """synthetic and long_range: rows in the dataset."""
    filler_vocab: int = 0
    """long_range: its filler's token ids, [0, filler_vocab), and those of the passkey cases without a tokenizer
    (framework.data.long_range); at most the model's vocabulary less the 19 ids the passkeys reserve. 0: min(256,
    that)."""
    short_lengths: List[int] = field(default_factory=lambda: [32, 64])
    """long_range with packing: the short documents' lengths in tokens, log-uniform in [lo, hi] (a model from random
    weights learns to copy in them first; framework.data.long_range)."""
    packing: bool = False
    """Concatenate documents into rows of seq_length; position_ids restart at each document. long_range: one long and
    many short generated documents a row."""
    shuffle: bool = True
    """Seeded shuffle of the row order (train.seed), reshuffled each epoch."""
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
    """Held-out rows for eval.every (data=hf): read like `path`. Synthetic data draws unseen rows instead."""


def reads_corpus(d) -> bool:
    """Whether the option's builder reads a corpus (data.path, a tokenizer), as data=hf does; synthetic rows do
    not. The builder says so itself (its `reads_corpus` attribute)."""
    from framework.builder import builder_says

    return builder_says(d, "reads_corpus")


def token_ids_only(d) -> bool:
    """Whether the option's rows are token ids with no text behind them (data=long_range): evaluation then builds
    its passkey cases from token ids, not through the tokenizer. The builder says so (its `token_ids_only`)."""
    from framework.builder import builder_says

    return builder_says(d, "token_ids_only")
