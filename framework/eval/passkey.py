"""Passkey retrieval cases: a key planted at depth d of a context of L tokens, the question at the end, and the answer
after it; scored teacher-forced (one forward, no generation) from the answer positions' CE and argmax.

With a tokenizer the filler, needle and question are text; without one (or with data=long_range) they are token ids
(framework.data.long_range.TokenLayout: filler, `QUERY NAME k1..k4` at the depth, filler, the same tokens again), the
format the learnable corpus teaches, its filler from the same data.filler_vocab ids.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from framework.data.long_range import TokenLayout

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
DEPTHS = (0.1, 0.5, 0.9)


@dataclass
class Case:
    length: int
    depth: float
    input_ids: torch.Tensor
    """[length] int64, ending with the answer."""
    answer_start: int
    """Index of the first answer token in input_ids."""
    answer_ids: List[int]


def lengths(spec, seq_length: int, pieces: int) -> List[tuple]:
    """(asked, used) per passkey length: eval.passkey_lengths (`auto`: seq_length x 1/8, 1/4, 1/2, 1), each rounded
    down to a multiple of `pieces` (the tokens of a row split over the sequence ranks: sp, or 2 x cp x sp)."""
    asked = (
        [seq_length // 8, seq_length // 4, seq_length // 2, seq_length]
        if spec is None or str(spec) == "auto"
        else [int(x) for x in spec]
    )
    out = []
    for n in asked:
        used = max(pieces, n - n % pieces)
        if (n, used) not in out:
            out.append((n, used))
    return out


class TextLayout:
    """The passkey context as text, through the tokenizer."""

    def __init__(self, tok):
        self.tok = tok
        self.bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        self.filler_ids = self.enc(FILLER)

    def enc(self, text: str) -> List[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def context(self, length: int, depth: float, g: torch.Generator):
        key = int(torch.randint(10000, 100000, (1,), generator=g))
        needle = self.enc(f" The pass key is {key}. Remember it. {key} is the pass key. ")
        question, answer = self.enc(" What is the pass key? The pass key is"), self.enc(f" {key}")
        n = length - len(self.bos) - len(needle) - len(question) - len(answer)
        if n < 0:
            raise ValueError(f"a passkey context needs at least {length - n} tokens, not {length}")
        filler = (self.filler_ids * math.ceil(n / len(self.filler_ids)))[:n]
        at = round(depth * n)
        ids = self.bos + filler[:at] + needle + filler[at:] + question + answer
        return torch.tensor(ids, dtype=torch.long), length - len(answer), answer


def layout(tokenizer_path: Optional[str], vocab_size: int, filler_vocab: int = 0):
    """TextLayout with the tokenizer at `tokenizer_path`, TokenLayout (filler ids [0, filler_vocab): data.filler_vocab,
    as the long_range corpus draws them) when there is none (or it cannot load)."""
    if tokenizer_path:
        try:
            from transformers import AutoTokenizer

            return TextLayout(AutoTokenizer.from_pretrained(tokenizer_path))
        except Exception:  # no tokenizer files (a random-weight or bare model): token ids
            pass
    return TokenLayout(vocab_size, filler_vocab)


def cases(lay, *, lengths_used: Sequence[int], depths: Sequence[float], samples: int, seed: int) -> List[Case]:
    """Every (length, depth, sample) case, the same ones at every evaluation (a pure function of `seed`)."""
    out = []
    for length in lengths_used:
        for depth in depths:
            for s in range(samples):
                g = torch.Generator().manual_seed(seed * 1_000_003 + length * 1009 + round(depth * 1000) * 31 + s)
                ids, start, answer = lay.context(length, float(depth), g)
                out.append(
                    Case(length=length, depth=float(depth), input_ids=ids, answer_start=start, answer_ids=list(answer))
                )
    return out
