"""Packed rows under Ulysses SP (2 CPU processes, gloo, sp_size=2) keep their documents apart.

One packed row of three documents goes through the real CLI path (data=hf, packing, sdpa): its step-1 loss must
equal the token-weighted loss of the three documents each run alone through plain transformers; with
attention.document_masking=false the same run must give a different loss (so the test can tell).
"""

import json

import torch

from helpers import run_job

DOCS = ["The quick brown fox", "jumps over the lazy dog, twice", "then sleeps."]  # row 0 (64 ByT5 tokens)
FILL = ["Row two is only here so", "each SP rank loads a row", "never trained."]
SEQ = 64


def save_model(path):
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = ByT5Tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return tok


def documents_alone_loss(model_dir, tok):
    """Sum of next-token CE over every document run alone, divided by the number of targets."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    total, count = 0.0, 0
    with torch.no_grad():
        for text in DOCS:
            ids = torch.tensor([tok(text)["input_ids"]])
            logits = model(input_ids=ids).logits[0, :-1]
            total += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    return total / count


def run_cli(tmp_path, name, model_dir, corpus, *extra):
    overrides = [
        f"model.name_or_path={model_dir}",
        "data=hf",
        f"data.path={corpus}",
        "data.packing=true",
        f"data.seq_length={SEQ}",
        "data.shuffle=false",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.max_steps=1",
        "engine.zero_stage=2",
        "optim.lr=0.0",
        *extra,
    ]
    run = run_job(overrides, str(tmp_path / name), timeout=300)
    assert run.returncode == 0 and run.metrics, run.describe()
    first = run.metrics[0]
    assert first["step"] == 1
    return first["loss"], run.stdout


def test_packed_row_loss_equals_documents_alone_and_differs_without_masking(tmp_path):
    model_dir = tmp_path / "model"
    tok = save_model(model_dir)
    lengths = [len(tok(t)["input_ids"]) for t in DOCS]
    assert sum(lengths) == SEQ and sum(len(tok(t)["input_ids"]) for t in FILL) == SEQ  # exactly one row each
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS + FILL))

    expected = documents_alone_loss(model_dir, tok)
    masked, said = run_cli(tmp_path, "masked", model_dir, corpus)
    leaky, said_leaky = run_cli(tmp_path, "leaky", model_dir, corpus, "attention.document_masking=false")
    assert said.count("document masking: packed rows run one causal SDPA call per document") == 1  # CPU's kernel
    assert "document masking" not in said_leaky
    assert abs(masked - expected) < 1e-4, (masked, expected)
    assert abs(leaky - expected) > 1e-3, (leaky, expected)
