"""Token-id passkey layout, shared by passkey evaluation without a tokenizer (framework.eval.passkey) and the
learnable synthetic corpus (data=long_range), so that what the corpus teaches is what the evaluation asks.

A passkey context of L tokens: filler, then at depth d the needle `KEY k1..kn`, more filler, then the question
`QUERY` followed by the answer `k1..kn`. Filler tokens are drawn uniformly from [0, vocab - 12); the key's tokens
from the 10 "digits" just above; KEY and QUERY are the last two ids.
"""
from dataclasses import dataclass

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
