"""Write a JSONL corpus of pre-tokenized documents (`input_ids` rows: no tokenizer needed) for the packing benchmark.

    python3 experiments/packed_vs_unpacked/make_docs.py OUT.jsonl --tokens 1000000 --min 256 --max 4096 --vocab 128256

Document lengths are uniform in [min, max] (seeded), token ids uniform in [0, vocab).
"""

import argparse
import json
import random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--tokens", type=int, default=1_000_000)
p.add_argument("--min", type=int, default=256)
p.add_argument("--max", type=int, default=4096)
p.add_argument("--vocab", type=int, default=128256)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
rng = random.Random(a.seed)
total = docs = 0
with open(a.out, "w") as f:
    while total < a.tokens:
        n = rng.randint(a.min, a.max)
        f.write(json.dumps({"input_ids": [rng.randrange(a.vocab) for _ in range(n)]}) + "\n")
        total, docs = total + n, docs + 1
print(f"{a.out}: {docs} documents, {total} tokens, mean {total / docs:.0f}")
