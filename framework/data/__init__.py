"""data: rows of token ids (synthetic or from HF datasets) → a fixed-order DP/SP-sharded DataLoader
(framework.data.loader, framework.data.sampler) → the SP adapter that cuts each batch along the sequence and adds
`shift_labels` (framework.data.adapter)."""

from framework.data.config import DataConfig, reads_corpus
from framework.data.loader import build_dataloader, held_out_data
from framework.data.rows import IGNORE, SyntheticRows, collate

__all__ = ["DataConfig", "IGNORE", "SyntheticRows", "build_dataloader", "collate", "held_out_data", "reads_corpus"]
