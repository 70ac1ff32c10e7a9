"""data=long_range: a synthetic corpus with long-range structure that a model from random weights learns in minutes, and
the token-id passkey layout it shares with passkey evaluation without a tokenizer (framework.eval.passkey), so what
the corpus teaches is what the evaluation asks.

Token ids (V: the model's vocabulary, F: data.filler_vocab, 0 = min(1024, V - 19)):
    filler [0, F)   digits [V - 19, V - 9)   needle marks [V - 9, V - 1) (NAMES of them)   QUERY V - 1
Filler comes from a small range so that its unigram statistics are learned in a few steps (loss ln F on random filler)
and what remains to learn is the structure. Every structure is a copy, so one mechanism (an induction head: find where
the current tokens occurred before, predict what followed) learns them all:
- copy rows (even i): a random filler segment of P tokens, P log-uniform in [min(64, L/4), L/2], repeated to fill the
  row: every token from position P on is predictable from P tokens back, the ones before P are not, so the loss by
  position falls with position once the model copies;
- passkey rows (odd i): random filler with up to NAMES (one per 64 tokens) passkeys, each a needle `NAME k1..k4` (four
  digits after its own mark) and later its question `QUERY NAME` followed by the answer `k1..k4`. Each pair is placed
  as an evaluation case is: a context of c tokens (c log-uniform in [L/16, L]) from the row's start, the needle at
  depth d (uniform) of it, the question at its end; the pairs interleave. The answer's first digit is the token that
  followed NAME, its others continue the copy.
A passkey case of the evaluation (TokenLayout.context) is one pair alone in filler, at a given length and depth.
Row i is a pure function of (seed, i), so every rank agrees and seed + 1 gives held-out rows.
"""

import math
from typing import List

import torch

NAMES = 8
"""Needle marks: a passkey row asks for up to this many keys, each planted after its own mark."""
RESERVED = 10 + NAMES + 1
"""Ids at the top of the vocabulary that filler never uses: 10 digits, the needle marks, QUERY."""
FILLER_VOCAB = 1024
"""Filler ids when data.filler_vocab=0 (fewer where the vocabulary has fewer than FILLER_VOCAB + RESERVED)."""
PAIR_TOKENS = 64
"""A passkey row holds one needle-question pair per this many tokens (up to NAMES)."""


def filler_size(vocab_size: int, filler_vocab: int = 0) -> int:
    """Filler ids in use: data.filler_vocab, or for 0 min(FILLER_VOCAB, vocab_size - RESERVED)."""
    return filler_vocab or min(FILLER_VOCAB, vocab_size - RESERVED)


class TokenLayout:
    """Where filler, digits, marks and the question sit among the token ids, and a passkey context in them."""

    def __init__(self, vocab_size: int, filler_vocab: int = 0, key_length: int = 4):
        self.vocab_size, self.key_length = vocab_size, key_length
        self.filler_vocab = filler_size(vocab_size, filler_vocab)
        top = vocab_size - RESERVED
        self.digits = range(top, top + 10)
        self.names = range(top + 10, top + 10 + NAMES)
        self.query_mark = vocab_size - 1

    @property
    def pair_tokens(self) -> int:
        """Tokens of one needle, question and answer: NAME k1..kn, QUERY NAME, k1..kn."""
        return 3 + 2 * self.key_length

    def key(self, g: torch.Generator) -> torch.Tensor:
        return self.digits[0] + torch.randint(0, 10, (self.key_length,), generator=g)

    def filler(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.filler_vocab, (n,), generator=g)

    def pair(self, name: int, g: torch.Generator):
        """(needle, question + answer, key) of one passkey: `NAME k1..kn`, `QUERY NAME k1..kn`."""
        key = self.key(g)
        return torch.cat([torch.tensor([name]), key]), torch.cat([torch.tensor([self.query_mark, name]), key]), key

    def context(self, length: int, depth: float, g: torch.Generator):
        """(input_ids [length], answer_start, answer ids): a passkey context ending with its answer."""
        n = length - self.pair_tokens
        if n < 0:
            raise ValueError(f"a passkey context needs at least {self.pair_tokens} tokens, not {length}")
        name = self.names[int(torch.randint(0, NAMES, (), generator=g))]
        needle, asked, key = self.pair(name, g)
        filler = self.filler(n, g)
        at = round(depth * n)
        ids = torch.cat([filler[:at], needle, filler[at:], asked])
        return ids, length - self.key_length, key.tolist()


class LongRangeRows(torch.utils.data.Dataset):
    """data=long_range's rows (the module docstring says what they hold): `[L]` input_ids, labels (the same) and
    position_ids (0..L-1: one document a row)."""

    def __init__(self, *, num_samples: int, lengths: List[int], vocab_size: int, seed: int, filler_vocab: int = 0):
        self.n, self.lengths, self.seed = num_samples, lengths, seed
        self.layout = TokenLayout(vocab_size, filler_vocab)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        L = self.lengths[i % len(self.lengths)]
        ids = self.passkeys(L, g) if i % 2 else self.copies(L, g)
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(L)}

    def copies(self, L: int, g: torch.Generator) -> torch.Tensor:
        """A filler segment of P tokens repeated over the row, P log-uniform in [min(64, L/4), L/2]."""
        period = log_uniform(max(1, min(64, L // 4)), max(1, L // 2), g)
        return self.layout.filler(period, g).repeat(math.ceil(L / period))[:L]

    def passkeys(self, L: int, g: torch.Generator) -> torch.Tensor:
        """Filler with needle-question pairs: pair j's context of c_j filler tokens from the row's start, its needle
        at depth d_j of it, its question at its end (positions counted in filler tokens, the pairs inserted)."""
        lay = self.layout
        pairs = min(NAMES, L // PAIR_TOKENS)
        n = L - pairs * lay.pair_tokens
        names = torch.randperm(NAMES, generator=g)[:pairs].tolist()
        events = []  # (filler tokens before it, 0 needle / 1 question, tokens)
        for name in names:
            needle, asked, _ = lay.pair(lay.names[name], g)
            length = log_uniform(max(1, n // 16), max(1, n), g)
            at = round(float(torch.rand((), generator=g)) * length)
            events += [(at, 0, needle), (length, 1, asked)]
        filler, out, done = lay.filler(n, g), [], 0
        for at, _, tokens in sorted(events, key=lambda e: e[:2]):
            out += [filler[done:at], tokens]
            done = at
        return torch.cat(out + [filler[done:]])


def log_uniform(lo: int, hi: int, g: torch.Generator) -> int:
    """An integer in [lo, hi], log-uniform."""
    x = math.exp(math.log(lo) + float(torch.rand((), generator=g)) * (math.log(hi) - math.log(lo)))
    return min(hi, max(lo, int(x)))
