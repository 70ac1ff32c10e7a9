"""Packed rows across the ring (parallelism.cp_size > 1, data.packing=true) keep their documents apart, through the
real CLI and worker path: one packed row of three documents of uneven lengths (20, 31 and 13 ByT5 tokens, none a
multiple of the 2 x cp_size parts the ring cuts each document into) gives, at step 1, the loss and every gradient of
plain transformers run on each document alone (rel 1e-5): on a ring of 2, and on Ulysses 2 x ring 2.

The check can fail: the same row read as one sequence (documents attending to each other) has another loss.
"""

import json

import pytest
import torch

from helpers import max_rel_diff, run_job
from test_packed_documents import DOCS, FILL, SEQ, save_model

pytestmark = pytest.mark.slow
RTOL = 1e-5


def documents_alone(model_dir, tok):
    """Plain transformers, fp32, sdpa: sum of next-token CE over every document run alone / number of targets, and
    every parameter's gradient of it; and the loss of the packed row read as one sequence."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    docs = [torch.tensor([tok(t)["input_ids"]]) for t in DOCS]
    total = sum(
        torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:], reduction="sum")
        for ids in docs
    )
    loss = total / sum(ids.shape[1] - 1 for ids in docs)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():  # the row as one sequence: the same targets (a document's first token has none)
        row = torch.cat(docs, dim=1)
        logits = model(input_ids=row).logits[0, :-1]
        keep = torch.ones(row.shape[1] - 1, dtype=torch.bool)
        for end in torch.tensor([ids.shape[1] for ids in docs]).cumsum(0)[:-1].tolist():
            keep[end - 1] = False
        across = torch.nn.functional.cross_entropy(logits[keep], row[0, 1:][keep]).item()
    return loss.item(), grads, across


@pytest.fixture(scope="module")
def packed_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ring_packed")
    model_dir = root / "model"
    tok = save_model(model_dir)
    assert [len(tok(t)["input_ids"]) for t in DOCS] == [20, 31, 13] and sum(
        len(tok(t)["input_ids"]) for t in FILL
    ) == SEQ
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS + 3 * FILL))  # 4 rows: one per rank
    return root, model_dir, corpus, documents_alone(model_dir, tok)


@pytest.mark.parametrize("sp,cp", [(1, 2), (2, 2)], ids=["cp2", "sp2_x_cp2"])
def test_packed_documents_across_the_ring_give_each_documents_plain_loss_and_gradients(packed_setup, sp, cp):
    root, model_dir, corpus, (loss, grads, across) = packed_setup
    assert abs(across - loss) > 1e-3, (across, loss)  # attention across documents would show
    run = run_job(
        [
            f"model.name_or_path={model_dir}",
            "data=hf",
            f"data.path={corpus}",
            "data.packing=true",
            f"data.seq_length={SEQ}",
            "data.shuffle=false",
            f"data.cache_dir={root / 'cache'}",
            "train.max_steps=1",
            "train.dump_grads=true",
            f"parallelism.sp_size={sp}",
            f"parallelism.cp_size={cp}",
        ],
        str(root / f"run_sp{sp}_cp{cp}"),
        timeout=420,
    )
    assert run.returncode == 0 and run.metrics, run.describe()
    assert run.metrics[0]["step"] == 1 and run.metrics[0]["tokens"] == SEQ
    assert run.losses[0] == pytest.approx(loss, rel=RTOL), (run.losses[0], loss)
    assert max_rel_diff(run.grads(), grads) < RTOL
    assert "ring attention: blocks run" in run.stdout + run.stderr
