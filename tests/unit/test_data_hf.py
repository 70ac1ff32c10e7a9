"""data=hf in one process: formats, the tokenization cache, packing, chat masking, and every bad-data rule."""

import json
import os

import pytest
from omegaconf import OmegaConf
from transformers import ByT5Tokenizer

from framework.data import IGNORE, DataConfig, collate
from framework.data.hf import build_hf_dataset
from framework.errors import ConfigError

TEXTS = ["ab", "cdef", "g", "hijklmnopq"]
TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return ByT5Tokenizer()


def data_cfg(tmp_path, path, **kw):
    return OmegaConf.structured(
        DataConfig(_target_="framework.data.loader.hf", path=str(path), cache_dir=str(tmp_path / "cache"), **kw)
    )


def ids_of(tok, text):
    return tok(text)["input_ids"]  # ByT5: one id per byte, then </s>


def rows(ds):
    return [{k: v.tolist() for k, v in r.items()} for r in ds]


def write(tmp_path, fmt, texts=TEXTS):
    import pyarrow as pa

    if fmt == "jsonl":
        p = tmp_path / "c.jsonl"
        p.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    elif fmt == "json":
        p = tmp_path / "c.json"
        p.write_text(json.dumps([{"text": t} for t in texts]))
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        p = tmp_path / "shards"
        p.mkdir()
        pq.write_table(pa.table({"text": texts[:2]}), p / "part-0.parquet")
        pq.write_table(pa.table({"text": texts[2:]}), p / "part-1.parquet")
    elif fmt == "csv":
        p = tmp_path / "c.csv"
        p.write_text("text,n\n" + "".join(f"{t},{i}\n" for i, t in enumerate(texts)))
    elif fmt == "text":
        p = tmp_path / "c.txt"
        p.write_text("".join(t + "\n" for t in texts))
    elif fmt == "arrow":
        p = tmp_path / "c.arrow"
        with pa.ipc.new_stream(str(p), pa.schema([("text", pa.string())])) as w:
            w.write_table(pa.table({"text": texts}))
    elif fmt == "saved":
        from datasets import Dataset

        p = tmp_path / "saved"
        Dataset.from_dict({"text": texts}).save_to_disk(str(p))
    elif fmt == "glob":
        for i, t in enumerate(texts):
            (tmp_path / f"s{i}.jsonl").write_text(json.dumps({"text": t}) + "\n")
        p = tmp_path / "s*.jsonl"
    return p


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv", "text", "arrow", "saved", "glob"])
def test_each_format_loads_one_document_per_row(tmp_path, tok, fmt):
    ds = build_hf_dataset(data_cfg(tmp_path, write(tmp_path, fmt), seq_length=64), tokenizer_path=None, tokenizer=tok)
    assert [r["input_ids"] for r in rows(ds)] == [ids_of(tok, t) for t in TEXTS]
    assert all(
        r["labels"] == r["input_ids"] and r["position_ids"] == list(range(len(r["input_ids"]))) for r in rows(ds)
    )


def test_second_build_reads_the_cache_without_calling_the_tokenizer(tmp_path, tok, monkeypatch):
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(tok_dir)
    cfg = data_cfg(tmp_path, write(tmp_path, "jsonl"), seq_length=64, packing=True)
    calls = []
    original = ByT5Tokenizer.__call__
    monkeypatch.setattr(ByT5Tokenizer, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    first = rows(build_hf_dataset(cfg, tokenizer_path=str(tok_dir)))
    assert calls
    calls.clear()
    second = rows(build_hf_dataset(cfg, tokenizer_path=str(tok_dir)))
    assert not calls and first == second
    cfg.add_eos = False  # another option → another cache entry: tokenized again
    build_hf_dataset(cfg, tokenizer_path=str(tok_dir))
    assert calls


def test_packing_rows_tokens_positions_and_labels(tmp_path, tok):
    cfg = data_cfg(tmp_path, write(tmp_path, "jsonl"), seq_length=5, packing=True)
    ds = build_hf_dataset(cfg, tokenizer_path=None, tokenizer=tok)
    a, c, g, h = (ids_of(tok, t) for t in TEXTS)  # 3, 5, 2, 11 tokens
    assert rows(ds) == [
        {"input_ids": a + c[:2], "labels": [IGNORE] + a[1:] + [IGNORE, c[1]], "position_ids": [0, 1, 2, 0, 1]},
        # "cdef" goes on in the next row, restarting at position 0 there
        {"input_ids": c[2:] + g, "labels": [IGNORE] + c[3:] + [IGNORE, g[1]], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": h[:5], "labels": [IGNORE] + h[1:5], "position_ids": [0, 1, 2, 3, 4]},
        {"input_ids": h[5:10], "labels": [IGNORE] + h[6:10], "position_ids": [0, 1, 2, 3, 4]},
        {"input_ids": h[10:], "labels": [IGNORE], "position_ids": [0]},
    ]
    batch = collate([ds[4], ds[0]], multiple_of=2, length=5)  # the short last row is padded to seq_length
    assert batch["input_ids"][0].tolist() == h[10:] + [0] * 4
    assert batch["labels"][0].tolist() == [IGNORE] * 5
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4]


def test_unpacked_rows_truncate_or_leave_out_long_documents(tmp_path, tok):
    path = write(tmp_path, "jsonl")
    cut = build_hf_dataset(data_cfg(tmp_path, path, seq_length=4), tokenizer_path=None, tokenizer=tok)
    assert [r["input_ids"] for r in rows(cut)] == [ids_of(tok, t)[:4] for t in TEXTS]
    with pytest.warns(UserWarning, match="2 documents longer"):
        kept = build_hf_dataset(
            data_cfg(tmp_path, path, seq_length=4, truncation=False), tokenizer_path=None, tokenizer=tok
        )
    assert [r["input_ids"] for r in rows(kept)] == [ids_of(tok, "ab"), ids_of(tok, "g")]
    batch = collate([kept[0], kept[1]], multiple_of=2)
    assert batch["input_ids"].shape == (2, 4) and batch["labels"][1].tolist() == ids_of(tok, "g") + [IGNORE] * 2


def test_pretokenized_rows_are_used_as_they_are(tmp_path, tok):
    p = tmp_path / "t.jsonl"
    p.write_text(
        json.dumps({"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]})
        + "\n"
        + json.dumps({"input_ids": [8, 9], "labels": [8, IGNORE]})
        + "\n"
    )
    ds = build_hf_dataset(data_cfg(tmp_path, p, seq_length=8, packing=True), tokenizer_path=None)
    assert rows(ds) == [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE, 6, 7, IGNORE, IGNORE], "position_ids": [0, 1, 2, 0, 1]}
    ]


def test_chat_rows_mask_exactly_the_prompt(tmp_path, tok):
    conv = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "ciao"},
    ]
    p = tmp_path / "chat.jsonl"
    p.write_text(json.dumps({"messages": conv}) + "\n")
    with pytest.raises(ConfigError, match="data.chat_template.*need a chat template"):
        build_hf_dataset(data_cfg(tmp_path, p, seq_length=256), tokenizer_path=None, tokenizer=tok)
    ds = build_hf_dataset(
        data_cfg(tmp_path, p, seq_length=256, chat_template=TEMPLATE), tokenizer_path=None, tokenizer=tok
    )
    row = rows(ds)[0]
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt1 = "<system>be brief\n<user>hi\n<assistant>"  # the generation prompt ends with the answer's own tag
    expected_ids = enc(prompt1) + enc("hello\n") + enc("<user>bye\n<assistant>") + enc("ciao\n")
    expected_labels = (
        [IGNORE] * len(enc(prompt1)) + enc("hello\n") + [IGNORE] * len(enc("<user>bye\n<assistant>")) + enc("ciao\n")
    )
    assert row["input_ids"] == expected_ids and row["labels"] == expected_labels


@pytest.mark.parametrize("case", ["missing", "broken_line", "empty", "no_field", "tokenizer", "too_long", "bad_value"])
def test_bad_data_stops_with_one_message(tmp_path, tok, case):
    path, kw, tok_path, match = tmp_path / "c.jsonl", dict(seq_length=64), None, None
    use_tok = tok
    if case == "missing":
        path, match = tmp_path / "nope.jsonl", r"data.path=.*nope.jsonl.*no such file"
    elif case == "broken_line":
        path.write_text('{"text": "ok"}\n{"text": "also ok"}\n{"text": broken\n')
        match = r"broken row in .*c.jsonl, line 3"
    elif case == "empty":
        path.write_text("")
        match = r"c.jsonl is empty \(0 bytes\)"
    elif case == "no_field":
        path.write_text(json.dumps({"body": "x", "title": "y"}) + "\n")
        match = r"data.text_field='text': no such field.*\['body', 'title'\]"
    elif case == "tokenizer":
        path.write_text(json.dumps({"text": "x"}) + "\n")
        use_tok, tok_path, match = None, str(tmp_path / "no_tokenizer_here"), r"data.tokenizer=.*no tokenizer"
    elif case == "too_long":
        path.write_text("".join(json.dumps({"text": "x" * 80}) + "\n" for _ in range(3)))
        kw.update(truncation=False)
        match = r"data.truncation=False: all 3 documents are longer than data.seq_length=64"
    elif case == "bad_value":
        path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": None}) + "\n")
        match = r"broken row 1 \(.*c.jsonl, line 2\): text is NoneType"
    with pytest.raises(ConfigError, match=match):
        build_hf_dataset(data_cfg(tmp_path, path, **kw), tokenizer_path=tok_path, tokenizer=use_tok)
    cache = tmp_path / "cache"  # a failed tokenization leaves no cache file (too_long: after a complete one)
    left = [f for f in os.listdir(cache) if f.startswith(("tokenized", "tmp"))] if cache.exists() else []
    assert case == "too_long" or not left


def test_unreachable_hub_id_stops_with_one_message(tmp_path, tok, monkeypatch):
    """A hub id when the hub cannot be reached (offline mode here; CI has no network either): one ConfigError."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ConfigError,
        match=r"data.path='nobody-here/no-such-dataset': is neither a local file/directory "
        r"nor a hub dataset that could be loaded \(.*OfflineModeIsEnabled.*Fix: ",
    ):
        build_hf_dataset(data_cfg(tmp_path, "nobody-here/no-such-dataset"), tokenizer_path=None, tokenizer=tok)


def test_streaming_rows_match_the_map_style_rows_and_split_over_ranks(tmp_path, tok):
    path = write(tmp_path, "jsonl")
    mapped = rows(
        build_hf_dataset(data_cfg(tmp_path, path, seq_length=5, packing=True), tokenizer_path=None, tokenizer=tok)
    )
    stream = build_hf_dataset(
        data_cfg(tmp_path, path, seq_length=5, packing=True, streaming=True, shuffle=False),
        tokenizer_path=None,
        tokenizer=tok,
    )
    assert [{k: v.tolist() for k, v in r.items()} for r in stream.rows(0)] == mapped
    # 2 SP ranks, micro batch 1: rank j reads rows j, j+2, ... (the step order of a single process)
    got = []
    for j in range(2):
        it = iter(stream.assign(dp_rank=0, dp_size=1, sp_rank=j, sp_size=2, micro_batch_size=1, seed=0))
        got.append([next(it)[0]["input_ids"].tolist() for _ in range(3)])
    assert got[0] == [mapped[0]["input_ids"], mapped[2]["input_ids"], mapped[4]["input_ids"]]
    assert got[1] == [mapped[1]["input_ids"], mapped[3]["input_ids"], mapped[0]["input_ids"]]  # next epoch


def test_streaming_dataloader_yields_collated_batches_from_the_resume_step(tmp_path, tok):
    from framework.data.loader import hf

    cfg = data_cfg(tmp_path, write(tmp_path, "jsonl"), seq_length=5, packing=True, streaming=True, shuffle=False)
    mapped = rows(
        build_hf_dataset(
            data_cfg(tmp_path, write(tmp_path, "jsonl"), seq_length=5, packing=True), tokenizer_path=None, tokenizer=tok
        )
    )
    tok.save_pretrained(tmp_path / "tok")
    dl = hf(
        cfg=cfg,
        vocab_size=384,
        tokenizer_path=str(tmp_path / "tok"),
        dp_rank=1,
        dp_size=2,
        sp_rank=0,
        sp_size=1,
        micro_batch_size=1,
        seed=0,
        start_step=1,
    )
    batch = next(iter(dl))  # step 1, DP replica 1 → global row 3
    assert batch["input_ids"].tolist() == [mapped[3]["input_ids"]] and batch["labels"].shape == (1, 5)
