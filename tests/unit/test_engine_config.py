"""ZeRO-3's layer gathering (framework.engine.build.gather_layers_whole): every decoder layer a ZeRO-3 leaf module
under ZeRO-3 unless engine.deepspeed names DeepSpeed's leaf modules itself; ZeRO-2 untouched. tests/distributed/
test_zero3_layers.py shows it gives the same losses and gradients as per-submodule hooks.

ZeRO-3's reuse distance (framework.engine.build.reuse_distance): two of the model's largest decoder layers, counted
with LoRA's adapters, set for ZeRO-3 only and never over a value the user gave in engine.deepspeed. With DeepSpeed's
default (1e9) on a small model every release walked the whole recorded module order: a 2-layer model with tiled MLP
and LoRA took 45 s for its second step on CPU, 1.5-1.8 s with this distance (same losses)."""

import deepspeed
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from framework.engine.build import build_engine, reuse_distance
from framework.model.features import decoder_layers

ARCH = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)


def tiny():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=128, **ARCH))


def test_two_decoder_layers_in_parameters_adapters_included():
    h, i = ARCH["hidden_size"], ARCH["intermediate_size"]
    kv = ARCH["num_key_value_heads"] * h // ARCH["num_attention_heads"]
    layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    model = tiny()
    assert reuse_distance(model) == 2 * layer

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["gate_proj"]))
    assert reuse_distance(lora) == 2 * (layer + 4 * h + 4 * i)  # A: r x h, B: i x r
    assert reuse_distance(torch.nn.Linear(3, 3)) == int(1e9)  # no decoder layer found: DeepSpeed's default


def built(monkeypatch, zero):
    """(the model, the zero_optimization config deepspeed.initialize got) after build_engine with `zero`."""
    seen = {}

    def initialize(model, config, **kw):
        seen.update(config["zero_optimization"])
        return (None,)

    monkeypatch.setattr(deepspeed, "initialize", initialize)
    model = tiny()
    build_engine(model, optimizer=object(), scheduler=None, ds_cfg={"zero_optimization": zero}, mpu=None)
    return model, seen


@pytest.mark.parametrize(
    "stage, given, expected",
    [(3, None, "model"), (3, 12345, 12345), (2, None, None)],
    ids=["zero3_default", "zero3_user_value_kept", "zero2_untouched"],
)
def test_the_engine_gets_it_under_zero3_unless_the_user_set_one(monkeypatch, stage, given, expected):
    model, seen = built(monkeypatch, {"stage": stage} | ({} if given is None else {"stage3_max_reuse_distance": given}))
    want = reuse_distance(model) if expected == "model" else expected
    assert seen.get("stage3_max_reuse_distance") == want


@pytest.mark.parametrize(
    "stage, leaf_module, whole",
    [(3, None, True), (3, {"classes": []}, False), (2, None, False)],
    ids=["zero3_default", "zero3_user_choice_kept", "zero2_untouched"],
)
def test_each_decoder_layer_is_gathered_whole_under_zero3_unless_the_user_chose(monkeypatch, stage, leaf_module, whole):
    from deepspeed.utils import z3_leaf_module

    model, _ = built(monkeypatch, {"stage": stage} | ({} if leaf_module is None else {"leaf_module": leaf_module}))
    leaves = [m for m in model.modules() if z3_leaf_module(m)]
    assert leaves == (decoder_layers(model) if whole else [])
    assert len(decoder_layers(model)) == ARCH["num_hidden_layers"]
