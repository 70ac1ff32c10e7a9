"""Token-id passkey layout, shared by passkey evaluation without a tokenizer (framework.eval.passkey) and the
learnable synthetic corpus (data=long_range), so that what the corpus teaches is what the evaluation asks.

A passkey context of L tokens: filler, then at depth d the needle `KEY k1..kn`, more filler, then the question
`QUERY` followed by the answer `k1..kn`. Filler tokens are drawn uniformly from [0, vocab - 12); the key's tokens
from the 10 "digits" just above; KEY and QUERY are the last two ids.
"""

import math
from dataclasses import dataclass
from typing import List

import torch


@dataclass(frozen=True)
class TokenLayout:
    vocab_size: int
    key_length: int = 4
    """Tokens of a key (each one of 10 digit tokens)."""

    @property
    def filler_vocab(self) -> int:
        return self.vocab_size - 12

    @property
    def digits(self) -> range:
        return range(self.vocab_size - 12, self.vocab_size - 2)

    @property
    def key_mark(self) -> int:
        return self.vocab_size - 2

    @property
    def query_mark(self) -> int:
        return self.vocab_size - 1

    def key(self, g: torch.Generator) -> torch.Tensor:
        return self.digits[0] + torch.randint(0, 10, (self.key_length,), generator=g)

    def filler(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.filler_vocab, (n,), generator=g)

    def context(self, length: int, depth: float, g: torch.Generator):
        """(input_ids [length], answer_start, answer ids): a passkey context ending with its answer."""
        key = self.key(g)
        needle, question = torch.cat([torch.tensor([self.key_mark]), key]), torch.tensor([self.query_mark])
        n = length - len(needle) - len(question) - len(key)
        if n < 0:
            raise ValueError(f"a passkey context needs at least {length - n} tokens, not {length}")
        filler = self.filler(n, g)
        at = round(depth * n)
        ids = torch.cat([filler[:at], needle, filler[at:], question, key])
        return ids, length - len(key), key.tolist()


class LongRangeRows(torch.utils.data.Dataset):
    """data=long_range: generated rows with something to learn at long range; row i is a pure function of (seed, i),
    so every rank agrees and seed + 1 gives held-out rows.

    Even rows copy: a random segment of P filler tokens (P log-uniform in [min(64, L/4), L/2]) repeated to fill the
    row, so every token from position P on is predictable from P tokens back and the tokens before P are not. Odd
    rows are passkey contexts (TokenLayout.context) at a uniform depth: the answer is predictable only by fetching the
    key from far back. From random weights the loss by position falls at far positions first and passkey accuracy
    rises (eval.passkey without a tokenizer asks exactly this format).
    """

    def __init__(self, *, num_samples: int, lengths: List[int], vocab_size: int, seed: int):
        self.n, self.lengths, self.seed = num_samples, lengths, seed
        self.layout = TokenLayout(vocab_size)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        L = self.lengths[i % len(self.lengths)]
        if i % 2:
            depth = float(torch.rand((), generator=g))
            ids, _, _ = self.layout.context(L, depth, g)
        else:
            lo, hi = max(1, min(64, L // 4)), max(1, L // 2)
            period = int(math.exp(math.log(lo) + float(torch.rand((), generator=g)) * (math.log(hi) - math.log(lo))))
            segment = self.layout.filler(max(1, period), g)
            ids = segment.repeat(math.ceil(L / len(segment)))[:L]
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(L)}
