"""data=long_range: a synthetic corpus with long-range structure that a model from random weights learns in minutes, and
the token-id passkey layout it shares with passkey evaluation without a tokenizer (framework.eval.passkey), so what
the corpus teaches is what the evaluation asks.

Token ids (V: the model's vocabulary, F: data.filler_vocab, 0 = min(256, V - 19)):
    filler [0, F)   digits [V - 19, V - 9)   needle marks [V - 9, V - 1) (NAMES of them)   QUERY V - 1
Filler comes from a small range so that its unigram statistics are learned in a few steps (loss ln F on random filler)
and what remains to learn is the structure. Every structure is a copy, so one mechanism (an induction head: find where
the current tokens occurred before, predict what followed) learns them all. A document of L tokens is
- filler: a random segment of P tokens repeated (3 documents in 4; P log-uniform in [min(64, m/4), m/2], m the
  filler's length), so every filler token from position P on is predictable from P tokens back and the ones before P
  are not: the loss by position falls with position once the model copies; or plain random filler (1 in 4), as the
  evaluation's passkey cases have;
- with up to NAMES passkeys planted in it (one per 64 tokens; a shorter document, half the time, one): a needle
  `QUERY NAME k1..k4` (four digits after a mark of its own) and later its question, the same tokens again, the key
  predictable there by copying what followed `QUERY NAME` before (as a text passkey repeats "the pass key is"); each
  pair placed as an evaluation case is: a context of c filler tokens (c log-uniform in [m/16, m]) from the document's
  start, the needle at depth d (uniform) of it, the question at its end; the pairs interleave.
Unpacked (data.packing=false), a row is one document. Packed, a row holds one long document (log-uniform in [L/4, L])
and fills the rest with short ones (log-uniform in data.short_lengths), position_ids restarting at each (the attention
keeps them apart, as for any packed row). Why packed: a causal head looking back over thousands of tokens gets little
gradient toward the one token it should copy from, so from random weights the copy is learned in short documents
first. On a CPU a 2-layer Llama 64 wide learns it in 200 steps of 32 documents of 32 tokens (tests/unit/
test_long_range.py). On one H200 (experiments/long_context_eval/, 2026-12-03), a 2- or 3-layer one 128 wide, packed
16K or 32K rows, learned to copy within the short documents first and then, in about 1,000 steps somewhere between
steps 3,000 and 6,000, from every distance: the loss at positions past 1K fell from 5.55 to 1.3-4.2. Right after,
the 3-layer one fetched keys in 64-token contexts (accuracy 0 → 11/12 on an H100, 2026-12-07) but not in contexts of
256 tokens and more (accuracy 0, the answers' log-probability that of a guess among the digits), nor with 64 or 256
pairs a long document. With a filler of 1,024 ids a 4-layer model learned nothing: hence the default of 256.
A passkey case of the evaluation (TokenLayout.context) is one pair alone in filler, at a given length and depth.
Row i is a pure function of (seed, i), so every rank agrees and seed + 1 gives held-out rows.
"""

import math
from typing import List

import torch

NAMES = 8
"""Needle marks: a document asks for up to this many keys, each planted after its own mark."""
RESERVED = 10 + NAMES + 1
"""Ids at the top of the vocabulary that filler never uses: 10 digits, the needle marks, QUERY."""
FILLER_VOCAB = 256
"""Filler ids when data.filler_vocab=0 (fewer where the vocabulary has fewer than FILLER_VOCAB + RESERVED)."""
PAIR_TOKENS = 64
"""A document holds one needle-question pair per this many tokens (up to NAMES)."""
REPEATED = 0.75
"""Share of documents whose filler is a repeated segment (the rest: plain random filler)."""
SHORT_PAIR = 0.5
"""Share of documents shorter than PAIR_TOKENS (and at least two pairs long) that hold one passkey pair: without
them a packed row's short documents, where a model learns to copy first, ask for nothing, and no run learned
retrieval (experiments/long_context_eval)."""
SHORT = (32, 64)
"""data.short_lengths' default: the short documents' lengths in tokens, log-uniform in this range (the shorter, the
sooner a model learns to copy in them: the module docstring)."""


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
        """Tokens of one needle, question and answer: QUERY NAME k1..kn twice."""
        return 2 * (2 + self.key_length)

    def key(self, g: torch.Generator) -> torch.Tensor:
        return self.digits[0] + torch.randint(0, 10, (self.key_length,), generator=g)

    def filler(self, n: int, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.filler_vocab, (n,), generator=g)

    def pair(self, name: int, g: torch.Generator):
        """(needle, question + answer, key) of one passkey: `QUERY NAME k1..kn` both. The question repeats the needle's
        prefix, as a text passkey does ("the pass key is 71432" ... "the pass key is"): the key is fetched by matching
        the tokens before it, as any copy is (the module docstring)."""
        key = self.key(g)
        needle = torch.cat([torch.tensor([self.query_mark, name]), key])
        return needle, needle.clone(), key

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
    position_ids (0..L-1 for one document; with `packing`, restarting at each document)."""

    def __init__(
        self,
        *,
        num_samples: int,
        lengths: List[int],
        vocab_size: int,
        seed: int,
        filler_vocab: int = 0,
        packing: bool = False,
        short: tuple = SHORT,
    ):
        self.n, self.lengths, self.seed, self.packing, self.short = num_samples, lengths, seed, packing, short
        self.layout = TokenLayout(vocab_size, filler_vocab)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        L = self.lengths[i % len(self.lengths)]
        ids, pos = self.packed(L, g) if self.packing else (self.document(L, g), torch.arange(L))
        return {"input_ids": ids, "labels": ids.clone(), "position_ids": pos}

    def packed(self, L: int, g: torch.Generator):
        """One long document and short ones after it: (input_ids, position_ids)."""
        sizes, left = [log_uniform(max(1, L // 4), L, g)], L
        left -= sizes[0]
        while left > 0:
            sizes.append(min(left, log_uniform(*self.short, g)))
            left -= sizes[-1]
        return torch.cat([self.document(n, g) for n in sizes]), torch.cat([torch.arange(n) for n in sizes])

    def document(self, L: int, g: torch.Generator) -> torch.Tensor:
        """Filler (a repeated segment, or plain) with needle-question pairs: pair j's context of c_j filler tokens from
        the document's start, its needle at depth d_j of it, its question at its end (the pairs inserted)."""
        lay = self.layout
        pairs = min(NAMES, L // PAIR_TOKENS)
        if pairs == 0 and L >= 2 * lay.pair_tokens and torch.rand((), generator=g) < SHORT_PAIR:
            pairs = 1  # a short document asks too: where retrieval is learned first
        m = L - pairs * lay.pair_tokens
        filler = self.repeated(m, g) if torch.rand((), generator=g) < REPEATED else lay.filler(m, g)
        names = torch.randperm(NAMES, generator=g)[:pairs].tolist()
        events = []  # (filler tokens before it, 0 needle / 1 question, tokens)
        for name in names:
            needle, asked, _ = lay.pair(lay.names[name], g)
            length = log_uniform(max(1, m // 16), max(1, m), g)
            at = round(float(torch.rand((), generator=g)) * length)
            events += [(at, 0, needle), (length, 1, asked)]
        out, done = [], 0
        for at, _, tokens in sorted(events, key=lambda e: e[:2]):
            out += [filler[done:at], tokens]
            done = at
        return torch.cat(out + [filler[done:]])

    def repeated(self, m: int, g: torch.Generator) -> torch.Tensor:
        """m filler tokens: a segment of P repeated, P log-uniform in [min(64, m/4), m/2]."""
        period = log_uniform(max(1, min(64, m // 4)), max(1, m // 2), g)
        return self.layout.filler(period, g).repeat(math.ceil(max(m, 1) / period))[:m]


def log_uniform(lo: int, hi: int, g: torch.Generator) -> int:
    """An integer in [lo, hi], log-uniform."""
    x = math.exp(math.log(lo) + float(torch.rand((), generator=g)) * (math.log(hi) - math.log(lo)))
    return min(hi, max(lo, int(x)))
