"""The FLOPs formula (framework.tracker.flops): a hand count of one layer, torch's own FLOP counter, and the published
figures (Llama-3-8B's parameter count, PaLM's and Megatron-LM's per-token formulas)."""

import math
from types import SimpleNamespace

import pytest
import torch

from framework.tracker.flops import (
    flops_of_positions,
    flops_of_rows,
    flops_per_token,
    matmul_params,
    peak_for_name,
    peak_tflops,
)

ONE_LAYER = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=384,
    max_position_embeddings=4096,
)


def llama_config(**fields):
    from transformers import AutoConfig

    return AutoConfig.for_model("llama", **fields)


def test_one_llama_layer_matches_a_hand_count():
    c = llama_config(**ONE_LAYER)
    h, d, q_heads, kv_heads, inter, v = 64, 16, 4, 2, 128, 384
    attn = h * (q_heads * d) + 2 * h * (kv_heads * d) + (q_heads * d) * h  # q, k, v, o projections
    mlp = 3 * h * inter  # gate, up, down
    head = h * v
    assert matmul_params(c) == attn + mlp + head == 12288 + 24576 + 24576
    s = 100
    # forward per token: 2 FLOPs per matmul parameter; QK^T and PV are 2*s*d per head each, causal keeps half
    forward = 2 * (attn + mlp + head) + (2 * s * d + 2 * s * d) * q_heads / 2
    assert flops_per_token(c, s) == pytest.approx(3 * forward, rel=1e-12)


def test_dense_flops_match_torch_flop_counter_and_attention_is_half_the_full_square():
    """torch.utils.flop_counter counts a real forward+backward of the one-layer model. Its projections (mm) must
    equal our 6N per token; its attention matmuls (bmm: eager attention computes the full s x s square and masks
    it afterwards) are twice ours, which counts only the causal half."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    c = llama_config(**ONE_LAYER)
    model = AutoModelForCausalLM.from_config(c, dtype=torch.float32, attn_implementation="eager")
    s = 128
    ids = torch.randint(0, c.vocab_size, (1, s))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).logits.sum().backward()
    by_op = {
        str(k).split(".")[-1] if not hasattr(k, "__name__") else k.__name__: v
        for k, v in counter.get_flop_counts()["Global"].items()
    }
    assert set(by_op) == {"mm", "bmm"}, by_op
    measured_attn, measured_dense = by_op["bmm"], by_op["mm"]
    ours_dense = 6 * matmul_params(c) * s
    ours_attn = flops_per_token(c, s) * s - ours_dense
    assert measured_dense == pytest.approx(ours_dense, rel=1e-9)
    assert measured_attn == pytest.approx(2 * ours_attn, rel=1e-9)


def test_llama3_8b_parameter_count_is_the_published_one():
    c = llama_config(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=131072,
    )
    embedding, norms = 128256 * 4096, (2 * 32 + 1) * 4096
    assert matmul_params(c) + embedding + norms == 8_030_261_248  # Meta-Llama-3-8B: 8.03B parameters
    # short sequences: 6 FLOPs per matmul parameter per token (~4.5e10); at 8K attention adds 6*L*h*s
    assert flops_per_token(c, 0) == 6 * 7_504_658_432
    assert flops_per_token(c, 8192) - flops_per_token(c, 0) == 6 * 32 * 4096 * 8192


def test_llama3_2_1b_counts_its_tied_lm_head_as_a_matmul():
    c = llama_config(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    )
    # Llama-3.2-1B: 1,235,814,400 parameters (embedding shared with the head), norms 33 x 2048
    assert matmul_params(c) + 33 * 2048 == 1_235_814_400


def test_attention_term_is_palm_s_halved_for_a_causal_mask():
    """PaLM (arXiv 2204.02311, appendix B): 6N + 12 * L * H * Q * T training FLOPs per token for full attention."""
    L, H, Q, T = 118, 48, 256, 2048  # PaLM-540B
    c = SimpleNamespace(
        hidden_size=H * Q,
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=H,
        head_dim=Q,
        intermediate_size=4 * H * Q,
        vocab_size=256000,
        hidden_act="silu",
    )
    assert flops_per_token(c, T) - 6 * matmul_params(c) == pytest.approx(12 * L * H * Q * T / 2)


def test_gpt3_175b_matches_megatron_lm_formula_with_causal_attention():
    """Megatron-LM (Narayanan et al. 2021) without recompute: 72 * B*s * l * h^2 * (1 + s/(6h) + V/(12*l*h)) per
    iteration, which counts the full s x s attention square; ours halves that term."""
    l, h, V, s = 96, 12288, 51200, 2048
    c = SimpleNamespace(
        hidden_size=h,
        num_hidden_layers=l,
        num_attention_heads=96,
        num_key_value_heads=96,
        n_inner=4 * h,
        vocab_size=V,
        activation_function="gelu",
        model_type="gpt2",
    )
    dense = 72 * l * h**2 * (1 + V / (12 * l * h))
    attn_full = 72 * l * h**2 * s / (6 * h)
    assert flops_per_token(c, s) == pytest.approx(dense + attn_full / 2, rel=1e-12)


def test_packed_rows_count_attention_per_document():
    c = llama_config(**ONE_LAYER)
    one_doc = flops_of_rows(c, [[256]])
    two_docs = flops_of_rows(c, [[128, 128]])
    assert one_doc == pytest.approx(flops_per_token(c, 256) * 256)
    assert one_doc - two_docs == pytest.approx((flops_per_token(c, 256) - flops_per_token(c, 128)) * 256)


def test_flops_from_position_ids_count_each_document_whatever_the_shard():
    """What the engine counts each micro-step: the tokens of this rank's shard, from their position ids."""
    c = llama_config(**ONE_LAYER)
    one_doc = torch.arange(256)[None]
    # one document: the per-token formula at s + 1 (each query sees p + 1 keys; the formula's s/2 average is s^2/2)
    assert flops_of_positions(c, one_doc) == pytest.approx(flops_per_token(c, 257) * 256)
    # two SP shards of the row add up to the row
    assert flops_of_positions(c, one_doc[:, :128]) + flops_of_positions(c, one_doc[:, 128:]) == pytest.approx(
        flops_of_positions(c, one_doc)
    )
    # a packed row of two documents: the two documents alone (attention per document, never across)
    packed = torch.cat([torch.arange(100), torch.arange(156)])[None]
    assert flops_of_positions(c, packed) == pytest.approx(
        flops_of_positions(c, torch.arange(100)[None]) + flops_of_positions(c, torch.arange(156)[None])
    )
    assert flops_of_positions(c, packed) < flops_of_positions(c, one_doc)


def test_peak_comes_from_the_card_name_and_an_override_wins():
    assert peak_for_name("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_for_name("NVIDIA H100 PCIe") == 756.0
    assert peak_for_name("NVIDIA H200") == 989.0
    assert peak_for_name("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_for_name("NVIDIA L40S") == 362.0
    assert peak_for_name("Some CPU") == 0.0
    assert peak_tflops(123.0) == 123.0


def plan_8b_2gpu(seq_length, keep_layers=0, round_threshold=math.inf):
    """framework.plan.memory.host_plan for Llama-3.1-8B (8.03e9 parameters, 32 layers, hidden 4096) on 2 ranks,
    sp_size 2, optimizer (SuperOffload, as measured) and checkpoints offloaded; torch's pinned allocator rounding every
    buffer (its default)."""
    from framework.plan.memory import host_plan

    return host_plan(
        params=8_030_261_248,
        layers=32,
        hidden=4096,
        seq_length=seq_length,
        micro_batch_size=1,
        world=2,
        sp_size=2,
        offload_optimizer=True,
        offload_params=False,
        offload_activations=True,
        keep_layers=keep_layers,
        round_threshold=round_threshold,
        super_offload=True,
    )


def test_host_ram_plan_of_the_measured_2gpu_run():
    """Llama-3.1-8B at 384K on 2 GPUs (sp 2), optimizer and checkpoints offloaded: 8.03e9 x 12 B of optimizer state
    (89.7 GiB), SuperOffload's 4 B per parameter (29.9) and 4.9 GiB per rank, each rank's pinned buffers (its 4.0e9
    parameters' fp32 gradients, 14.9 GiB -> 16, and bf16 copies, 7.5 -> 8), and 32 x 393,216 x 4,096 x 2 B of hidden
    states (96 GiB) -- which take 128 GiB, as torch's pinned allocator rounds each rank's 1.5 GiB buffer up to 2 GiB,
    unless pinned_max_round_threshold_mb tells it not to."""
    plan = plan_8b_2gpu(393_216)
    assert plan["optimizer_states"] == pytest.approx(89.7, abs=0.1)
    assert plan["super_offload"] == pytest.approx(29.9 + 9.8, abs=0.1)
    assert plan["pinned_buffers"] == pytest.approx(48.0, abs=0.01)
    assert plan["checkpointed_activations"] == pytest.approx(128.0, abs=0.01)
    assert plan["total"] == pytest.approx(89.7 + 39.7 + 48.0 + 128.0 + 7.6, abs=0.2)
    assert plan_8b_2gpu(393_216, round_threshold=64 * 2**20)["checkpointed_activations"] == pytest.approx(96.0)
    # 1M tokens: the checkpoints alone are 256 GiB (4 GiB per rank and layer, no rounding), past the 256 GiB host
    assert plan_8b_2gpu(2**20)["checkpointed_activations"] == pytest.approx(256.0)


@pytest.mark.parametrize(
    "conf,threshold",
    [
        ("", math.inf),
        ("expandable_segments:True", math.inf),
        ("expandable_segments:True,pinned_max_round_threshold_mb:64", 64 * 2**20),
        ("pinned_max_round_threshold_mb:256,pinned_max_cached_size_mb:128", 128 * 2**20),  # the cache limit wins
    ],
)
def test_pinned_buffers_are_rounded_as_the_allocator_settings_say(conf, threshold, monkeypatch):
    from framework.plan.memory import pinned_round_threshold, pinned_size

    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
    assert pinned_round_threshold() == threshold
    gib = 2**30
    assert pinned_size(gib) == gib  # a power of two already
    assert pinned_size(5 * gib // 4) == (2 * gib if threshold == math.inf else 5 * gib // 4)
    assert pinned_size(40 * 2**20) == 64 * 2**20  # below every threshold here: rounded


def test_host_ram_plan_explains_the_320k_run_that_ran_out_of_host_memory():
    """2 x H100 (252 GiB host), Llama-3.1-8B at 320K, sp 2, 22 layers offloaded (the plan without rounding said 238
    GiB and kept 10 layers): host memory in use climbed to 250 GiB and a rank was killed (experiments/alst_2gpu,
    notes). Each rank's 1.25 GiB checkpoint took 2 GiB: 271 GiB. Auto now keeps 18 layers, the fewest that fit."""
    from framework.plan.memory import HOST_BUDGET, keep_layers_to_fit

    # 237 GiB today's count without rounding (the plan of then said 238)
    assert plan_8b_2gpu(327_680, keep_layers=10, round_threshold=64 * 2**20)["total"] == pytest.approx(237, abs=1)
    rounded = plan_8b_2gpu(327_680, keep_layers=10)["total"]
    assert rounded == pytest.approx(273, abs=1) and rounded > 252
    n = keep_layers_to_fit(plan_8b_2gpu(327_680, keep_layers=1), host_gib=252, layers=32, keep_layers=1)
    assert n == 19
    assert plan_8b_2gpu(327_680, keep_layers=n)["total"] <= HOST_BUDGET * 252 < plan_8b_2gpu(327_680, n - 1)["total"]


def test_host_ram_plan_counts_only_the_offloaded_layers():
    """model.offload_keep_layers=12 keeps 12 of Llama-8B's 32 layers' checkpoints on the GPU: 20 x 1M x 8 KiB."""
    assert plan_8b_2gpu(2**20, keep_layers=12)["checkpointed_activations"] == pytest.approx(160.0)
    assert plan_8b_2gpu(2**20, keep_layers=40)["checkpointed_activations"] == 0.0


def test_host_ram_plan_says_how_many_layers_to_keep_on_the_gpu():
    """Llama-8B, 2 GPUs, 512K: 182 GiB of optimizer and workers plus 124 GiB of checkpoints (31 layers) overflow a
    252 GiB host; keeping 17 more layers on the GPUs (4 GiB each, 2 GiB per GPU) brings it under 95%."""
    from framework.plan.memory import HOST_BUDGET, keep_layers_to_fit

    plan = plan_8b_2gpu(2**19, keep_layers=1)
    n = keep_layers_to_fit(plan, host_gib=252, layers=32, keep_layers=1)
    assert plan_8b_2gpu(2**19, keep_layers=n)["total"] <= HOST_BUDGET * 252 < plan_8b_2gpu(2**19, n - 1)["total"]
    assert n == 19
    assert keep_layers_to_fit(plan, host_gib=2000, layers=32, keep_layers=1) == 0
    assert keep_layers_to_fit(plan, host_gib=100, layers=32, keep_layers=1) == 0  # can't


@pytest.mark.parametrize("keep,measured", [(12, 225.0), (8, 233.0)])
def test_host_ram_plan_matches_the_measured_256k_runs(keep, measured):
    """2 x H100, Llama-3.1-8B, 256K, sp 2 (experiments/alst_2gpu, 2026-11-26): host memory in use during the steps
    was 225 GiB with 12 layers' checkpoints kept on the GPUs and 233 GiB with 8. The plan is within 3 GiB, and both
    (they trained) are under the warning threshold of a 252 GiB host."""
    from framework.plan.memory import HOST_BUDGET

    plan = plan_8b_2gpu(2**18, keep_layers=keep)
    assert plan["total"] == pytest.approx(measured, abs=3.0)
    assert plan["total"] < HOST_BUDGET * 252


def _text(cfg):
    from framework.model import hf_config

    return hf_config(name_or_path=cfg.model.name_or_path, arch=cfg.model.arch).get_text_config()


def _8b_256k(keep="auto"):
    from helpers import compose

    return compose(
        [
            "model=llama3_8b",
            "data.seq_length=262144",
            "parallelism.sp_size=2",
            "model.activation_checkpointing=true",
            "model.offload_activations=true",
            f"model.offload_keep_layers={keep}",
            "engine.offload_optimizer=true",
            "engine.zero_stage=3",
            "engine.super_offload=true",
        ]
    )


@pytest.mark.parametrize(
    "host_gib,local_ranks,expected",
    [
        (252, None, 5),  # 185 GiB of optimizer + workers, 2 GiB per offloaded layer: 27 offloaded fit under 95%
        (252, "1", 1),  # one rank per node (2 nodes): half of everything, fits with DeepSpeed's 1
        (2000, None, 1),  # a big host: nothing moves to the GPUs
        (150, None, 32),  # not even the optimizer fits: every checkpoint stays on the GPUs, and the line warns
    ],
)
def test_offload_keep_layers_auto_fits_the_node(host_gib, local_ranks, expected, monkeypatch):
    """model.offload_keep_layers=auto (the default) keeps on the GPUs the fewest layers whose checkpoints the node's
    host RAM cannot take: Llama-3.1-8B, 256K, sp 2, 2 ranks."""
    import types

    from framework.plan import memory

    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: types.SimpleNamespace(total=host_gib * 2**30))
    if local_ranks:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_ranks)
    else:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cfg = _8b_256k()
    assert memory.keep_layers(cfg, 2, _text(cfg)) == expected
    line = memory.describe(cfg, 2, _text(cfg))
    assert (
        f"model.offload_keep_layers=auto keeps {expected} of 32 layers' checkpoints on the GPUs "
        f"({expected * 131072 * 4096 * 2 / 2**30:.1f} GiB on each)" in line
    )
    assert ("warning" in line) == (host_gib == 150)
    if expected not in (1, 32):  # the chosen count is the smallest that fits: one fewer would not
        assert plan_8b_2gpu(2**18, keep_layers=expected - 1)["total"] > memory.HOST_BUDGET * host_gib
    assert memory.keep_layers(_8b_256k(7), 2, _text(cfg)) == 7  # a number is taken as it is


def test_host_ram_plan_line_says_which_number_would_fit(monkeypatch):
    """An explicit model.offload_keep_layers the host cannot take: the line warns and names the smallest that fits,
    with what it costs each GPU (Llama-3.1-8B, 256K, sp 2: 1 GiB per layer per GPU)."""
    import types

    from framework.plan import memory

    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: types.SimpleNamespace(total=252 * 2**30))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    line = memory.describe(_8b_256k(1), 2, _text(_8b_256k(1)))
    assert "warning: this is likely to run out of host memory" in line
    assert "model.offload_keep_layers=5 would fit (it keeps 4 GiB more on each GPU)" in line


def test_lora_params_match_peft_and_the_published_count():
    """model.lora's trainable parameters: peft's own count on the tiny Llama (all-linear and a list), and the
    41,943,040 peft reports for Llama-3.1-8B at r=16 on all linear layers; the host plan counts Adam states for
    them only."""
    from omegaconf import OmegaConf
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from framework.model.lora import lora_params, peft_config
    from helpers import TINY

    for targets in (["all-linear"], ["q_proj", "v_proj"]):
        lora = OmegaConf.create({"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": targets})
        config = AutoConfig.for_model("llama", **TINY["llama"])
        model = get_peft_model(AutoModelForCausalLM.from_config(config), peft_config(lora))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert lora_params(config, lora) == trainable, targets
    eight_b = AutoConfig.for_model(
        "llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
    )
    lora = OmegaConf.create({"r": 16, "alpha": 32.0, "dropout": 0.0, "target_modules": ["all-linear"]})
    assert lora_params(eight_b, lora) == 41_943_040
    plan = plan_8b_2gpu(2**18, keep_layers=32)
    from framework.plan.memory import host_plan

    with_lora = host_plan(
        params=8.03e9,
        layers=32,
        hidden=4096,
        seq_length=2**18,
        micro_batch_size=1,
        world=2,
        sp_size=2,
        offload_optimizer=True,
        offload_params=False,
        offload_activations=True,
        keep_layers=32,
        trainable=41_943_040,
    )
    assert with_lora["optimizer_states"] == pytest.approx(12 * 41_943_040 / 2**30)
    assert plan["optimizer_states"] == pytest.approx(12 * 8.03e9 / 2**30, rel=1e-3)
