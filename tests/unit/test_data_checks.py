"""The data rules run by framework.validate before any worker starts (composed through Hydra, no workers)."""

import json

import pytest
from hydra import compose, initialize_config_dir
from transformers import ByT5Tokenizer

from framework.attention.rules import check_packed
from framework.cli import CONF_DIR
from framework.errors import ConfigError
from framework.validate import validate


def config(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["+experiment=smoke_cpu", *overrides])


def check_document_masking(cfg):
    """attention's rules for packed rows, as framework.validate calls them."""
    from framework.model import hf_config

    text = hf_config(name_or_path=cfg.model.name_or_path, arch=cfg.model.arch).get_text_config()
    check_packed(
        cfg.attention,
        text_config=text,
        device=cfg.train.device,
        packing=cfg.data.packing,
        micro_batch_size=cfg.train.micro_batch_size,
    )


@pytest.fixture()
def corpus(tmp_path):
    ByT5Tokenizer().save_pretrained(tmp_path / "tok")
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"text": "document number %d" % i}) + "\n" for i in range(8)))
    return [
        f"data.path={p}",
        f"data.tokenizer={tmp_path / 'tok'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.seq_length=32",
    ]


def test_validation_tokenizes_a_good_corpus_into_the_cache(tmp_path, corpus):
    assert validate(config("data=hf", *corpus, "data.packing=true")).world == 2
    assert [f.name for f in (tmp_path / "cache").iterdir() if f.name.startswith("tokenized-")]


@pytest.mark.parametrize(
    "override,match",
    [
        ("data.path={tmp}/missing.jsonl", r"data.path=.*missing.jsonl.*no such file"),
        ("data.tokenizer={tmp}/nothing", r"data.tokenizer=.*no tokenizer can be loaded"),
        ("data.seq_length=4096", r"data.path=.*gives 1 rows .* fewer than one step needs \(2"),
        ("parallelism.sp_seq_length_is_variable=false", r"data.pad_to_seq_length=False: unpacked rows vary"),
    ],
)
def test_validation_refuses_bad_data(tmp_path, corpus, override, match):
    packing = ["data.packing=true"] if "seq_length=4096" in override else []
    with pytest.raises(ConfigError, match=match):
        validate(config("data=hf", *corpus, *packing, override.format(tmp=tmp_path)))


def test_refuses_flex_attention_on_cpu():
    with pytest.raises(ConfigError, match=r"attention.implementation='flex_attention': FlexAttention has no backward"):
        validate(config("attention=flex_attention"))


def test_refuses_flash_with_packed_micro_batches_over_one():
    cfg = config("attention=flash_attention_2", "data.packing=true", "train.micro_batch_size=2")
    with pytest.raises(ConfigError, match=r"train.micro_batch_size=2: flash_attention_2 keeps packed documents"):
        check_document_masking(cfg)
    check_document_masking(config("attention=flash_attention_2", "data.packing=true"))  # one row: transformers' varlen


def test_refuses_document_masking_for_sliding_window_layers():
    cfg = config(
        "model=tiny_qwen3",
        "+model.arch.use_sliding_window=true",
        "+model.arch.sliding_window=16",
        "+model.arch.max_window_layers=1",
    )
    with pytest.raises(ConfigError, match=r"attention.document_masking=True: the model has .*sliding_attention"):
        check_document_masking(cfg)
    check_document_masking(config("model=tiny_qwen3"))  # full attention in every layer
