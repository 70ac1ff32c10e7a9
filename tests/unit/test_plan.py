"""The planner's terms against hand counts, its `auto` choice against what was measured fastest, ALST's published
maxima, and `plan=true` / the host-RAM refusal through the CLI (no worker starts)."""

import dataclasses
import json
import os

import pytest

from helpers import compose, run_cli

GIB = 2**30
H100 = ["hardware.gpu_mem_gib=79.65", "hardware.peak_tflops=989"]
H200 = ["hardware.gpu_mem_gib=139.8", "hardware.peak_tflops=989"]


def setup(experiment, overrides, world):
    from framework.model import hf_config
    from framework.plan.planner import hardware, setup_of

    cfg = compose(overrides, experiment=experiment)
    text = hf_config(name_or_path=cfg.model.name_or_path, arch=cfg.model.arch).get_text_config()
    hw = hardware(cfg, world)
    return cfg, text, hw, setup_of(cfg, text, world, hw)


def plan(experiment, overrides, world, **kw):
    from framework.plan.planner import make_plan

    cfg, text, _, _ = setup(experiment, overrides, world)
    return make_plan(cfg, text, world, **kw)


# ---- each term against a hand count (Llama-3.1-8B: 8.03e9 parameters, 32 layers, h 4096, kv 1024) ----
P8B = 8_029_995_008  # matmuls + embedding table; the norms (266,240) are left out


@pytest.mark.parametrize(
    "stage,offload,expected",
    [
        (
            3,
            True,
            {"weights": 2 * P8B / 2 + 2 * 525_336_576 + 2 * 125e6, "buckets": 1e9},
        ),  # LM head: the largest gather
        (
            3,
            False,
            {
                "weights": 2 * P8B / 2 + 2 * 525_336_576 + 2 * 125e6,
                "gradients": 4 * P8B / 2,
                "optimizer_states": 12 * P8B / 2,
                "buckets": 1e9,
            },
        ),
        (2, False, {"weights": 2 * P8B, "gradients": 2 * P8B / 2, "optimizer_states": 12 * P8B / 2, "buckets": 5e8}),
        (1, False, {"weights": 2 * P8B, "gradients": 2 * P8B, "optimizer_states": 12 * P8B / 2, "buckets": 5e8}),
    ],
)
def test_model_states_by_zero_stage_and_offload(stage, offload, expected):
    """bf16 weights 2 B, fp32 master + Adam 12 B per parameter, partitioned over the 2 ranks as the stage says;
    gradients bf16 (2 B) under stages 1-2 (DeepSpeed accumulates in the model dtype) with a double-buffered bf16
    bucket, fp32 (4 B) under stage 3; the offloaded optimizer leaves only the weights and the buckets on the GPU."""
    from framework.plan.gpu import model_states

    _, _, _, u = setup(
        "llama8b_2gpu_64k", [f"engine.zero_stage={stage}", f"engine.offload_optimizer={str(offload).lower()}"], 2
    )
    assert u.params == P8B
    assert model_states(u) == pytest.approx(expected)


def test_lora_trains_only_the_adapters():
    """model.lora.r = 16 on q_proj and v_proj of Llama-8B: 32 x 16 x ((4096 + 4096) + (4096 + 1024)) trainable
    parameters; gradients and optimizer states count only those, the bf16 weights all."""
    from framework.plan.gpu import model_states
    from framework.plan.memory import trainable_params

    _, text, _, u = setup("llama8b_2gpu_64k", ["engine.offload_optimizer=false"], 2)
    lora = {"r": 16, "target_modules": ["q_proj", "v_proj"]}
    n = trainable_params(text, lora)
    assert n == 32 * 16 * (8192 + 5120)
    states = model_states(dataclasses.replace(u, trainable=n))
    assert states["optimizer_states"] == pytest.approx(12 * n / 2) and states["gradients"] == pytest.approx(4 * n / 2)
    assert trainable_params(text, {"r": 0}) == trainable_params(text, None) == P8B


def test_checkpoints_offloaded_kept_and_restored():
    """Checkpointing keeps each layer's input, s_local x h x 2 B (1 GiB at 256K over 2 ranks); offloaded, only the
    kept layers' and the one restored for backward stay on the GPU."""
    from framework.plan.gpu import activations

    _, _, _, u = setup("llama8b_2gpu_long", ["model.offload_keep_layers=8"], 2)
    assert activations(dataclasses.replace(u, offload_activations=False))["checkpoints"] == 32 * GIB
    assert activations(u)["checkpoints"] == 9 * GIB


def test_kept_attention_costs_what_was_measured():
    """1B at 128K: each layer that keeps attention's output holds s x 32 heads x 64 x 2 B + fp32 statistics:
    528 MiB, as the 8 layers of experiments/keep_attention saved (4.13 GiB)."""
    from framework.plan.gpu import activations

    _, _, _, u = setup("llama1b_1gpu", ["data.seq_length=131072", "model.keep_attention_layers=8"], 1)
    assert activations(u)["kept_attention"] == 8 * 131072 * 32 * (64 * 2 + 4)
    assert activations(u)["kept_attention"] / GIB == pytest.approx(4.13, abs=0.01)
    full = activations(dataclasses.replace(u, recompute_attention=False))["kept_attention"]
    assert full == 2 * activations(u)["kept_attention"]


def test_untiled_logits_and_the_tiled_mlp_tile():
    """Full logits: 12 B per [s_local, vocab] element (fp32 logits' log-softmax output, its gradient and the incoming
    one) and the final hidden states with their gradient, 4 B per [s_local, h]; tiled MLP: one tile of
    ceil(s_local / h) tokens' 4 x intermediate bf16."""
    from framework.plan.gpu import activations

    _, _, _, u = setup("llama1b_1gpu", ["loss.tiled=false"], 1)
    assert activations(u)["logits"] == 65536 * 128256 * 12 + 65536 * 2048 * 4
    tiled = activations(dataclasses.replace(u, tiled_mlp=True))
    assert tiled["mlp_tile"] == 2048 * 8192 * 4 * 2  # 65536 / 32 tiles of 2048 tokens


def test_liger_keeps_less_than_transformers_norms():
    """At the MLP's backward (the peak of an untiled layer): transformers' two RMSNorms keep 3h each where Liger's
    keep the second norm's input only (h), Liger's SwiGLU recomputes act(gate) (I) and writes its gradients in place
    (I less)."""
    from framework.plan.gpu import layer_phases

    _, _, _, u = setup("llama1b_1gpu", ["model.recompute_attention=true"], 1)
    plain, liger = layer_phases(u), layer_phases(dataclasses.replace(u, liger=True))
    assert plain["mlp"] - liger["mlp"] == 2 * 3 * 2048 - 2048 + 2 * 8192


def test_saved_set_of_a_transformers_layer_matches_autograd():
    """The saved set layer_phases counts for transformers' Llama layer (no Liger, untiled MLP, attention recomputed)
    is what autograd saves on the CPU, counted by storage: norms 2 x 3h, norm outputs 2h, q h, k v 2kv, the kernel's
    output h, gate up act product 4I (cos/sin and per-row statistics left out: under 1%)."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    from framework.plan.gpu import layer_phases

    h, inter, s = 256, 1024, 256
    c = LlamaConfig(
        hidden_size=h, intermediate_size=inter, num_attention_heads=4, num_key_value_heads=1, num_hidden_layers=1
    )
    c._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(c, 0).to(torch.bfloat16)
    x = torch.randn(1, s, h, dtype=torch.bfloat16, requires_grad=True)
    cos, sin = LlamaRotaryEmbedding(c)(x, torch.arange(s)[None])
    skip = {t.untyped_storage().data_ptr() for t in [*layer.parameters(), x, cos, sin]}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x, position_embeddings=(cos, sin), attention_mask=None)
    big = sum(n for ptr, n in saved.items() if ptr not in skip and n > s * 32)  # not per-row statistics
    _, _, _, u = setup("llama1b_1gpu", ["model.recompute_attention=true"], 1)
    u = dataclasses.replace(u, hidden=h, intermediate=inter, heads=4, kv_heads=1, head_dim=64)
    counted = layer_phases(u)["mlp"] - h - 2 * inter  # less the backward's gradients: the saved set
    assert big == 2 * s * counted


def test_step_time_counts_the_flops_of_tracker_flops():
    """The FLOPs behind the compute parts: forward + backward of the matmuls are 6 N per token and attention 3x its
    forward, as framework.tracker.flops counts; checkpointing adds a forward (2 N, and attention's forward)."""
    from framework.plan import gpu
    from framework.tracker.flops import flops_per_token

    _, text, _, u = setup("llama1b_1gpu", ["model.activation_checkpointing=false"], 1)
    t = gpu.step_time(u)
    rate_mm = 989e12 * gpu.MATMUL_FRACTION
    rate_attn = 453e12  # cuDNN, head_dim 64, 64K: ATTENTION_TFLOPS
    attn_fwd = 2 * 16 * 32 * 64 * 65536**2
    compute = 6 * u.matmul_params * 65536 / rate_mm + 3.5 * attn_fwd / rate_attn
    assert t["forward_compute"] + t["backward_compute"] == pytest.approx(compute * gpu.COMPUTE_OVERHEAD)
    # the model FLOPs (MFU's count) of the same step: attention 3x forward there, 3.5x in the kernel's real work
    assert 6 * u.matmul_params * 65536 + 3 * attn_fwd == pytest.approx(flops_per_token(text, 65536) * 65536)
    ac = gpu.step_time(dataclasses.replace(u, activation_checkpointing=True))
    extra = ac["backward_compute"] - t["backward_compute"]
    assert extra == pytest.approx((2 * u.matmul_params * 65536 / rate_mm + attn_fwd / rate_attn) * gpu.COMPUTE_OVERHEAD)


@pytest.mark.parametrize(
    "kernel,d,length,tflops",
    [
        ("cudnn", 64, 65536, 453),
        ("cudnn", 64, 262144, 433),
        ("cudnn", 128, 65536, 589),
        ("cudnn", 128, 262144, 566),
        ("flash", 64, 65536, 292),
        ("flash", 128, 262144, 327),
        ("cudnn", 96, 65536, (453 + 589) / 2),
        ("cudnn", 64, 131072, (453 + 433) / 2),  # halfway in d, in log2(s)
        ("cudnn", 128, 1 << 20, 566),
        ("cudnn", 256, 32768, 589),  # outside the measured range: the nearest
    ],
)
def test_attention_rate_by_kernel_head_dim_and_length(kernel, d, length, tflops):
    """The attention kernel's rate is issue 28's table (one H200, causal fwd+bwd bf16, 32 q / 8 kv heads),
    interpolated in head_dim and log2(length), scaled by the card's peak over 989."""
    from framework.plan.gpu import attention_rate

    assert attention_rate(kernel, d, length) == pytest.approx(tflops * 1e12)
    assert attention_rate(kernel, d, length, peak_tflops=494.5) == pytest.approx(tflops * 0.5e12)


def test_step_time_takes_the_rate_of_the_runs_head_dim_and_kernel():
    """The attention part of a step is its FLOPs at the rate of the kernel the run calls: the 8B shape (d 128) at
    566 TFLOP/s with SDPA (cuDNN) at 256K, 327 with flash_attention_2 or with the ring (cp_size 2)."""
    from framework.plan import gpu
    from framework.plan.planner import attention_kernel

    cfg, _, _, u = setup("llama8b_2gpu_long", H100 + ["model.recompute_attention=false"], 2)
    assert u.head_dim == 128 and attention_kernel(cfg) == "cudnn"
    assert attention_kernel(compose(["attention=flash_attention_2"], experiment="llama8b_2gpu_long")) == "flash"
    assert (
        attention_kernel(compose(["parallelism.cp_size=2", "parallelism.sp_size=1"], experiment="llama8b_2gpu_long"))
        == "flash"
    )
    no_attn = dataclasses.replace(u, heads=0)
    attn_fwd = 2 * u.layers * u.heads * 128 * u.seq_length**2 / u.sp_size
    for kernel, rate in (("cudnn", 566e12), ("flash", 327e12)):
        k = dataclasses.replace(u, attention_kernel=kernel)
        t, base = gpu.step_time(k), gpu.step_time(dataclasses.replace(no_attn, attention_kernel=kernel))
        compute = lambda x: x["forward_compute"] + x["backward_compute"]  # noqa: E731
        assert compute(t) - compute(base) == pytest.approx(3.5 * attn_fwd / rate * gpu.COMPUTE_OVERHEAD)


# ---- auto: the plan picks what was measured fastest ----
AUTO = ["model.recompute_attention=auto", "model.tiled_mlp=auto", "model.offload_activations=auto"]
CHOICES = [  # (experiment, overrides, world, host GiB, what was measured fastest, source)
    (
        "llama1b_1gpu",
        H200,
        1,
        128,
        {"recompute_attention": False},
        "packed_vs_unpacked: 3.8 s kept against 4.4 s recomputed",
    ),
    (
        "llama1b_1gpu",
        H100 + ["data.seq_length=131072"],
        1,
        128,
        {"recompute_attention": False},
        "keep_attention: 13.26 s all layers kept against 14.67 s for 8",
    ),
    (
        "llama1b_1gpu",
        H200 + ["data.seq_length=262144", "model.liger=true"],
        1,
        128,
        {"recompute_attention": False},
        "issue 18: 41.5 s kept (71.2 GiB) against 51.8 s recomputed, one H200",
    ),
    (
        "llama8b_2gpu_long",
        H100,
        2,
        251,
        {"recompute_attention": False},
        "alst_2gpu: 256K keeping attention, 82.3 s (40.4% MFU; 384K, recomputing: 34.5%)",
    ),
    (
        "llama8b_2gpu_64k",
        H100,
        2,
        252,
        {"tiled_mlp": False, "offload_activations": False},
        "alst_2gpu: 13.4 s without tiling or offload against 14.6 s with the ALST stack, 64K",
    ),
    (
        "llama8b_2gpu_long",
        H100
        + [
            "data.seq_length=393216",
            "model.offload_keep_layers=auto",
            "model.tiled_mlp=true",
            "model.offload_activations=true",
        ],
        2,
        251,
        {"recompute_attention": True},
        "alst_2gpu: 384K trains recomputing attention; keeping it needs 48 GiB more",
    ),
    (
        "llama8b_4gpu_1m",
        H100 + ["model.tiled_mlp=true", "model.offload_activations=true"],
        4,
        503,
        {"recompute_attention": True},
        "alst_4gpu: 1M recomputes (kept: 64 GiB more per GPU)",
    ),
    (
        "llama8b_4gpu_1m",
        H100 + ["data.seq_length=524288", "model.tiled_mlp=true", "model.offload_activations=true"],
        4,
        503,
        {"recompute_attention": False},
        "alst_4gpu: 512K keeps attention, 43.4% MFU",
    ),
]


@pytest.mark.parametrize("row", CHOICES, ids=[r[5].split(":")[0] + " " + str(i) for i, r in enumerate(CHOICES)])
def test_auto_picks_what_was_measured_fastest(row):
    experiment, overrides, world, host, expected, _ = row
    auto = [a for a in AUTO if a.split("=")[0].split(".")[1] not in " ".join(overrides)]
    p = plan(experiment, overrides + auto + [f"hardware.host_ram_gib={host}", f"hardware.gpus_per_node={world}"], world)
    assert p.figures["fits"]
    assert {k: p.chosen.get(k) for k in expected} == expected


def test_auto_picks_what_fits_before_what_is_fast():
    """The fastest setup (attention kept, nothing offloaded or tiled) does not fit 8B at 1M on 4 x 80 GB; auto takes
    the fastest one that does."""
    from framework.plan.planner import best, candidates, predict

    cfg, text, hw, u = setup(
        "llama8b_4gpu_1m", H100 + AUTO + ["hardware.host_ram_gib=503", "hardware.gpus_per_node=4"], 4
    )
    options = candidates(u, {k: True for k in ("recompute_attention", "tiled_mlp", "offload_activations")}, "sdpa")
    assert len(options) == 8
    plans = [predict(o, hw) for o in options]
    fastest = min(plans, key=lambda f: f["step_time_s"])
    assert not fastest["fits"]
    figures, chosen = best(options, hw)
    assert figures["fits"] and figures["step_time_s"] == min(f["step_time_s"] for f in plans if f["fits"])


# ---- ALST's published maxima: Llama-3.1-8B, 80 GB H100s, 8 per node, 1.9 TB host per node, full ALST stack ----
PUBLISHED = [(8, 3_700_000), (16, 8_000_000), (32, 15_000_000)]  # arXiv 2506.13996


@pytest.mark.parametrize("sp,published", PUBLISHED)
def test_max_seq_length_against_alst_published(sp, published):
    node = H100 + ["hardware.host_ram_gib=1769", "hardware.gpus_per_node=8"]  # 1.9e12 B
    p = plan("llama8b_500k", node + [f"parallelism.sp_size={sp}"], sp, search=True)
    assert p.max_seq_length == pytest.approx(published, rel=0.15)


def test_search_goes_over_every_setup_auto_allows_and_names_it():
    """8B, 500K, sp 8 on 80 GB GPUs and a 1.9 TB host: `auto` keeps attention's output at 500K, which caps the
    length near 1.6M; recomputing it reaches 4M. validate's plan (the switches resolved first, as a run sees them)
    searches with the switches the user left `auto` still free, and names the setup of the maximum."""
    from framework.model import hf_config
    from framework.plan.rules import check
    from framework.resolve import resolve, unresolved

    node = H100 + ["hardware.host_ram_gib=1900", "hardware.gpus_per_node=8"]
    cfg = compose(node + ["plan=true"], experiment="llama8b_500k")
    text = hf_config(name_or_path=cfg.model.name_or_path, arch=cfg.model.arch).get_text_config()
    fixed = plan("llama8b_500k", node + ["model.recompute_attention=false"], 8, search=True)
    left_auto = unresolved(cfg)  # validate's order: what was auto, the resolve step, then the plan's rules
    assert resolve(cfg, text_config=text, world=8, on_gpu=True)["model.recompute_attention"] is False
    p = check(cfg, text_config=text, world=8, on_gpu=False, planning=True, unresolved=left_auto)
    assert p.chosen == {"recompute_attention": False} and cfg.model.recompute_attention is False
    assert fixed.max_seq_length < 2_000_000 < 4_000_000 < p.max_seq_length
    assert p.max_seq_length_setup == {
        "recompute_attention": True,
        "tiled_mlp": True,
        "offload_activations": True,
        "offload_keep_layers": 1,
    }
    assert p.record()["max_seq_length_setup"] == p.max_seq_length_setup
    assert "model.recompute_attention=true" in p.table()


def test_search_keeps_fixed_switches_fixed():
    """A switch the user set is not searched: with attention kept (model.recompute_attention=false) the 8B 500K
    search stays below 2M and says so."""
    p = plan(
        "llama8b_500k",
        H100 + ["hardware.host_ram_gib=1900", "hardware.gpus_per_node=8", "model.recompute_attention=false"],
        8,
        search=True,
    )
    assert p.max_seq_length < 2_000_000 and p.max_seq_length_setup["recompute_attention"] is False


def test_plan_keeps_attention_at_256k_on_one_h200():
    """`auto` is resolved once, by rank 0's validation (ranks torchrun started take rank 0's resolved config): for the
    1B shape at 256K with Liger on one H200 the plan keeps attention's output."""
    overrides = H200 + ["train.device=cuda", "data.seq_length=262144", "model.liger=true", "hardware.host_ram_gib=128"]
    assert plan("llama1b_1gpu", overrides, 1).chosen == {"recompute_attention": False}


# ---- through the CLI: plan=true starts nothing; a plan past the host's RAM is refused ----
def test_plan_true_writes_plan_json_and_starts_no_worker(tmp_path):
    """smoke_cpu with plan=true on this machine (no GPU): plan.json with DESIGN's six keys, result.json ok, no
    metrics.jsonl (no worker ran), and the GPU figures say what they assume."""
    run = run_cli(["plan=true", "hardware.host_ram_gib=64"], str(tmp_path), timeout=120)
    assert run.returncode == 0, run.describe()
    rec = json.load(open(tmp_path / "plan.json"))
    assert set(rec) >= {"fits", "gpu_peak_gib", "host_ram_gib", "step_time_s", "first_wall", "max_seq_length"}
    assert rec["fits"] is True and rec["first_wall"] is None and rec["max_seq_length"] >= 256
    assert run.result["status"] == "ok" and run.result["steps"] == 0
    assert run.result["peak_mem_gib"] == pytest.approx(rec["gpu_peak_gib"], abs=0.01)
    assert not os.path.exists(tmp_path / "metrics.jsonl")
    assert "assume an 80 GB H100" in run.stdout


def test_plan_says_what_runs_out_first(tmp_path):
    """llama8b_2gpu_long (256K, 8 layers' checkpoints kept on the GPUs) planned for 2 x H100 on a 200 GiB host: the
    GPUs fit (about 62 GiB, 61.2 measured), the host does not (about 233 GiB, 233 measured on a 251 GiB host); with
    plan=true it is only reported (the last line [no-fit], exit status 2), and the longest length that fits is
    shorter than 256K."""
    run = run_cli(
        ["plan=true", "hardware.host_ram_gib=200", "model.recompute_attention=false", *H100],
        str(tmp_path),
        experiment="llama8b_2gpu_long",
        timeout=120,
    )
    assert run.returncode == 2 and run.stdout.strip().splitlines()[-1].startswith("[no-fit] "), run.describe()
    rec = json.load(open(tmp_path / "plan.json"))
    assert rec["fits"] is False and rec["first_wall"] == "host_ram"
    assert rec["gpu_peak_gib"] == pytest.approx(61.2, rel=0.15) and rec["host_ram_gib"] == pytest.approx(233, rel=0.1)
    assert 0 < rec["max_seq_length"] < 262144


def test_auto_on_cpu_processes_writes_plain_booleans(tmp_path):
    """`auto` is resolved before config.yaml is written and the workers start: on CPU processes (nothing to plan
    for) to the switches' defaults; the run trains."""
    import yaml

    run = run_cli(["model.tiled_mlp=auto", "model.recompute_attention=auto", "train.max_steps=1"], str(tmp_path))
    assert run.returncode == 0, run.describe()
    model = yaml.safe_load(open(tmp_path / "config.yaml"))["model"]
    assert model["tiled_mlp"] is False and model["recompute_attention"] is True


def test_auto_switch_rejects_other_words(tmp_path):
    from framework.errors import ConfigError
    from framework.validate import validate

    with pytest.raises(ConfigError, match=r"model.tiled_mlp='sometimes': must be true, false or auto"):
        validate(compose(["model.tiled_mlp=sometimes"]))


def test_run_whose_host_plan_exceeds_the_node_is_refused(tmp_path):
    """The host RAM plan of two CPU workers with the optimizer offloaded (3.8 GiB each) past a 4 GiB node: one
    ConfigError, exit 2, before any worker starts."""
    run = run_cli(["engine.offload_optimizer=true", "hardware.host_ram_gib=4"], str(tmp_path), timeout=120)
    assert run.returncode == 2, run.describe()
    assert "data.seq_length=256: the host RAM plan is 8 GiB per node, more than its 4 GiB" in run.stderr
    assert "Traceback" not in run.stderr and not os.path.exists(tmp_path / "metrics.jsonl")


def test_longest_sequence_search_starts_from_the_plan(monkeypatch):
    """hydra/sweeper=max_seqlen on GPUs starts at the plan's max_seq_length and moves by 15%: with a wall 10% past
    the plan (within its tolerance) it needs 5 probes, where doubling from the config's 64K needs 10."""
    from hydra_plugins.max_seqlen_sweeper import max_seqlen_sweeper as m

    cfg, *_ = setup("llama1b_1gpu", H200 + ["train.device=cuda", "hardware.host_ram_gib=128"], 1)
    planned = m.planned_start(cfg)
    assert planned == plan("llama1b_1gpu", H200 + ["hardware.host_ram_gib=128"], 1, search=True).max_seq_length
    assert m.planned_start(compose(["train.device=cpu"], experiment="llama1b_1gpu")) is None
    wall = int(planned * 1.1)

    def run_search(start_from_plan):
        monkeypatch.setattr(m, "planned_start", lambda job_cfg: planned if start_from_plan else None)
        sweeper = m.MaxSeqlenSweeper(granularity=16384)
        probed = []

        def probe(base, length):
            probed.append(length)
            return {"seq_length": length, "status": "ok" if length <= wall else "oom", "job_dir": None}

        sweeper.probe = probe
        out = sweeper.search([], cfg)
        assert out["max_seq_length"] == max(n for n in probed if n <= wall)
        return probed

    with_plan, without = run_search(True), run_search(False)
    assert with_plan[0] == planned // 16384 * 16384
    assert (len(with_plan), len(without)) == (5, 10)


def test_startup_line_warns_past_gpu_memory():
    """A run whose plan is past the GPU's memory starts, with a warning naming what to change; within, no warning.
    Llama-3.1-8B at 256K on 2 GPUs, attention kept in every layer and 8 layers' checkpoints on the GPUs: about 62
    GiB, fits 80 GB, not 40 GB."""
    over = plan(
        "llama8b_2gpu_long",
        ["hardware.gpu_mem_gib=40", "hardware.host_ram_gib=251", "model.recompute_attention=false"],
        2,
    )
    assert over.figures["first_wall"] == "gpu_memory"
    assert "warning: this is likely to run out of GPU memory" in over.line()
    fits = plan("llama8b_2gpu_long", H100 + ["hardware.host_ram_gib=251", "model.recompute_attention=false"], 2)
    assert fits.figures["fits"] and "warning" not in fits.line()


def test_plan_for_a_cluster_from_a_one_gpu_machine(monkeypatch):
    """plan=true validates for the GPUs it plans for: 8 ranks pass on a machine with one GPU (a real run there is
    refused, naming the count), and liger-kernel need not be installed here."""
    import torch

    from framework.errors import ConfigError
    from framework.validate import validate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    node = H100 + ["hardware.host_ram_gib=1769", "hardware.gpus_per_node=8"]
    checked = validate(compose(node + ["plan=true"], experiment="llama8b_500k"))
    assert checked.world == 8 and checked.plan.max_seq_length > 500_000
    with pytest.raises(ConfigError, match="needs 8 GPUs and this machine has 1"):
        validate(compose(node + ["model.liger=false"], experiment="llama8b_500k"))
