"""Loss by position and passkey retrieval under SP and ring sharding equal plain transformers on the same rows.

Each run trains one step with optim.lr=0 and evaluates after it, so its weights are the saved ones: the reference is
plain transformers (fp32, sdpa, one process) on the same held-out rows and passkey inputs. Runs: sp 2 with the tiled
loss; sp 2 x cp 2 (4 processes); sp 2 with packed documents (data=hf rows of input_ids). Ring attention refuses
packed rows today (framework.attention.rules.check_ring), so cp 2 is tested unpacked only.
"""

import json
import os

import pytest
import torch

from helpers import SEED, SEQ, VOCAB, assert_ok, synthetic_row

pytestmark = pytest.mark.slow

PASSKEY = ["eval.passkey=true", "eval.passkey_write_inputs=true", "eval.passkey_depths=[0.2,0.8]"]
PACKED_ROWS = [[100, 60, 96], [30, 200, 26]]  # document lengths of held-out rows 0 and 1 (each sums to SEQ)


def base(model_dir):
    return [
        f"model.name_or_path={model_dir}",
        "train.max_steps=1",
        f"data.seq_length={SEQ}",
        "data.shuffle=false",
        "optim.lr=0",
        "eval.every=1",
        "eval.steps=2",
        "checkpoint.export=false",
    ]


def model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()


def per_token(m, ids):
    """Plain transformers: CE and argmax of each position predicting the next token, `[len(ids) - 1]` each."""
    with torch.no_grad():
        logits = m(input_ids=torch.as_tensor(ids)[None]).logits[0, :-1].float()
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(ids)[1:], reduction="none"), logits.argmax(-1)


def bucketed(docs, m, edges):
    """[[lo, hi, loss, tokens]] over every document run alone, by the predicted token's position in it."""
    sums, counts = [0.0] * (len(edges) - 1), [0] * (len(edges) - 1)
    for ids in docs:
        ce, _ = per_token(m, ids)
        for pos, v in zip(range(1, len(ids)), ce.tolist()):
            for b in range(len(edges) - 1):
                if edges[b] <= pos < edges[b + 1]:
                    sums[b] += v
                    counts[b] += 1
    return [
        [edges[b], edges[b + 1], sums[b] / counts[b] if counts[b] else None, counts[b]] for b in range(len(edges) - 1)
    ]


def assert_buckets(got, want):
    assert [g[:2] + [g[3]] for g in got] == [w[:2] + [w[3]] for w in want]
    for g, w in zip(got, want):
        assert (g[2] is None) == (w[2] is None) and (w[2] is None or g[2] == pytest.approx(w[2], rel=1e-5)), (g, w)


def passkey_cases(run):
    with open(os.path.join(run.run_dir, "eval", "passkey_step_1.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_passkey_matches(run, m):
    cases = passkey_cases(run)
    assert [(c["length"], c["depth"]) for c in cases] == [(n, d) for n in (32, 64, 128, 256) for d in (0.2, 0.8)]
    for c in cases:
        ids, start, k = c["input_ids"], c["answer_start"], len(c["answer_ids"])
        assert len(ids) == c["length"] and ids[start:] == c["answer_ids"]
        ce, pred = per_token(m, ids)
        assert c["predicted_ids"] == pred[start - 1 : start - 1 + k].tolist(), c
        assert c["answer_logprob"] == pytest.approx(-ce[start - 1 : start - 1 + k].sum().item(), rel=1e-5), c
        assert c["correct"] == (c["predicted_ids"] == c["answer_ids"])
    acc = run.metrics[0]["eval_passkey_accuracy"]
    assert acc == sum(c["correct"] for c in cases) / len(cases)
    assert os.path.exists(os.path.join(run.run_dir, "eval", "passkey_step_1.png"))
    assert os.path.exists(os.path.join(run.run_dir, "eval", "loss_by_position.png"))
    return cases


def test_loss_by_position_and_passkey_equal_plain_transformers_under_sp_and_ring(cli_runs, tiny_llama_dir):
    m = model(tiny_llama_dir)
    held_out = [synthetic_row(i, seq_length=SEQ, vocab_size=VOCAB, seed=SEED + 1).tolist() for i in (0, 1)]
    edges = [0, 4, 8, 16, 32, 64, 128, 256]  # auto at 256 tokens
    want = bucketed(held_out, m, edges)
    runs = {
        "sp2 tiled": base(tiny_llama_dir) + ["parallelism.sp_size=2", "loss.tiled=true", "loss.tiled_shards=3"],
        "sp2 x cp2": base(tiny_llama_dir) + ["parallelism.sp_size=2", "parallelism.cp_size=2"],
    }
    cases = {}
    for name, overrides in runs.items():
        run = assert_ok(cli_runs.run(overrides + PASSKEY), steps=1)
        rec = run.metrics[0]
        assert_buckets(rec["eval_loss_by_position"], want)
        total = sum(w[2] * w[3] for w in want) / sum(w[3] for w in want)
        assert rec["eval_loss"] == pytest.approx(total, rel=1e-5)
        cases[name] = assert_passkey_matches(run, m)
    # the cases do not depend on the sharding
    assert [c["input_ids"] for c in cases["sp2 tiled"]] == [c["input_ids"] for c in cases["sp2 x cp2"]]


def test_loss_by_position_of_packed_documents_restarts_per_document(cli_runs, tiny_llama_dir, tmp_path_factory):
    g = torch.Generator().manual_seed(7)
    docs = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for row in PACKED_ROWS for n in row]
    corpus = tmp_path_factory.mktemp("packed") / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"input_ids": d}) + "\n" for d in docs))
    edges = [0, 16, 64, 128, 256]
    run = assert_ok(
        cli_runs.run(
            base(tiny_llama_dir)
            + [
                "parallelism.sp_size=2",
                "data=hf",
                f"data.path={corpus}",
                f"data.eval_path={corpus}",
                "data.packing=true",
                f"data.cache_dir={corpus.parent / 'cache'}",
                "eval.position_buckets=[0,16,64,128,256]",
            ]
        ),
        steps=1,
    )
    assert_buckets(run.metrics[0]["eval_loss_by_position"], bucketed(docs, model(tiny_llama_dir), edges))
