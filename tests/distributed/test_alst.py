"""The ALST memory switches change memory, never the math: each switch on, and all together, gives the same 3-step
loss trajectory (and grad norms) and the same step-1 gradients as all off, to float32 rounding. sp_size=2, tiny
Llama through the real CLI (see tests/distributed/test_sp_equivalence.py for the run setup), and tiny Qwen3 for a
second model family.

Tiling is forced where the tiny shapes would choose one tile: loss.tiled_shards=3 (uneven tiles of 43/43/42 rows)
and, for the single tiled_mlp run, model.tiled_mlp_shards=4; the all-together run uses the automatic MLP tiles
(s_local=128 over hidden=64: 2 tiles, agreed over ranks by an all-reduce).

On CPU DeepSpeed's CheckpointHiddenStatesOffload is a no-op: it marks the checkpointed hidden states but skips every
tensor that is not on an accelerator, so model.offload_activations here only shows that the switch runs and changes
nothing; test_offload_context_is_a_noop_on_cpu says so with DeepSpeed's own counters.
"""

import os

import pytest
import torch
from omegaconf import OmegaConf

from helpers import assert_ok, assert_trajectories_agree, common_overrides, max_rel_diff

RTOL = 1e-5
TILED_LOSS = ["loss.tiled=true", "loss.tiled_shards=3"]
SWITCHES = {
    "tiled_mlp": ["model.tiled_mlp=true", "model.tiled_mlp_shards=4"],
    "tiled_loss": TILED_LOSS,
    "activation_checkpointing": ["model.activation_checkpointing=true"],
    "offload_activations": ["model.activation_checkpointing=true", "model.offload_activations=true"],
    "keep_attention": ["model.activation_checkpointing=true", "model.recompute_attention=false"],
    "keep_attention_last_layer": ["model.activation_checkpointing=true", "model.keep_attention_layers=1"],
    "all": [
        "model.tiled_mlp=true",
        *TILED_LOSS,
        "model.activation_checkpointing=true",
        "model.offload_activations=true",
        "model.offload_keep_layers=0",
    ],
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(cli_runs, tiny_llama_dir):
    # the same override list as test_sp_equivalence's sp2 run: the session cache runs it once
    return assert_ok(cli_runs.run(common_overrides(tiny_llama_dir) + ["parallelism.sp_size=2"]))


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_switch_changes_nothing_but_memory(switch, cli_runs, tiny_llama_dir, baseline):
    run = assert_ok(cli_runs.run(common_overrides(tiny_llama_dir) + ["parallelism.sp_size=2"] + SWITCHES[switch]))
    assert_trajectories_agree(run, baseline, rtol=RTOL)
    assert max_rel_diff(run.grads(), baseline.grads()) < RTOL
    assert baseline.losses[0] != baseline.losses[2]


FORCE_OFFLOAD_ON_CPU = """
import torch
from deepspeed.runtime.activation_checkpointing import offload_activations as o
o._ActivationOffloadEngine._should_skip = lambda self, t: isinstance(t, torch.nn.Parameter) or t.numel() < 64
"""


@pytest.fixture(scope="module")
def offload_env(tmp_path_factory):
    """The environment of the offload runs: a sitecustomize that tells DeepSpeed's offload engine CPU tensors count."""
    from helpers import REPO, clean_env

    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(FORCE_OFFLOAD_ON_CPU)
    return clean_env(PYTHONPATH=os.pathsep.join([str(site), REPO, os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("keep,kept", [(0, 0), (1, 1), ("auto", 1)])
def test_offload_moves_the_hidden_states_through_the_zero3_engine(
    keep, kept, cli_runs, tiny_llama_dir, tmp_path, offload_env
):
    """The real path: the CLI, sp_size=2, ZeRO-3 (whose hooks swap each layer's input), with DeepSpeed's offload
    engine told (by a sitecustomize in every worker) that CPU tensors are offloadable. Each rank moves 2 - kept
    layers' hidden states [1, 128, 64] fp32 per step (auto keeps DeepSpeed's 1 when the host holds everything), and
    the run equals ZeRO-3 without offload. Fails without the
    ZeRO-3 marking fix (0 offloaded), and failed when a model loaded from a directory stayed in eval mode, where
    transformers does not checkpoint at all."""
    from helpers import run_job

    common = common_overrides(tiny_llama_dir) + [
        "parallelism.sp_size=2",
        "engine.zero_stage=3",
        "model.activation_checkpointing=true",
    ]
    base = assert_ok(cli_runs.run(common))
    run = assert_ok(
        run_job(
            common + ["model.offload_activations=true", f"model.offload_keep_layers={keep}"],
            str(tmp_path / "run"),
            env=offload_env,
        )
    )
    assert [m["offloaded_gib"] for m in run.metrics] == [(2 - kept) * 128 * 64 * 4 / 2**30] * 3
    assert_trajectories_agree(run, base, rtol=RTOL)
    assert max_rel_diff(run.grads(), base.grads()) < RTOL


def test_qwen3_tiled_mlp_and_loss(cli_runs, tiny_qwen3_dir):
    """A second family (Qwen3: q/k norms, explicit head_dim): tiled MLP (automatic tiles) and tiled loss."""
    base = assert_ok(cli_runs.run(common_overrides(tiny_qwen3_dir) + ["parallelism.sp_size=2"]))
    run = assert_ok(
        cli_runs.run(common_overrides(tiny_qwen3_dir) + ["parallelism.sp_size=2", "model.tiled_mlp=true", *TILED_LOSS])
    )
    assert_trajectories_agree(run, base, rtol=RTOL)
    assert max_rel_diff(run.grads(), base.grads()) < RTOL
    assert "q_norm" in " ".join(run.grads())  # it really was the Qwen3 architecture


@pytest.mark.parametrize("zero", [2, 3])
def test_tiled_loss_with_a_head_tied_to_the_embedding(zero, cli_runs, tiny_llama_tied_dir):
    """Llama-3.2-1B ties its LM head to the input embedding: the tiled loss's per-tile gradients and the embedding's
    must reach ZeRO as one reduction (it refused a second one: "has already been reduced")."""
    common = common_overrides(tiny_llama_tied_dir) + ["parallelism.sp_size=2", f"engine.zero_stage={zero}"]
    base = assert_ok(cli_runs.run(common))
    run = assert_ok(cli_runs.run(common + TILED_LOSS))
    assert_trajectories_agree(run, base, rtol=RTOL)
    assert max_rel_diff(run.grads(), base.grads()) < RTOL
    assert "model.embed_tokens.weight" in run.grads() and "lm_head.weight" not in run.grads()  # really tied


def tiny_model(family="llama", **fields):
    from transformers import AutoConfig, AutoModelForCausalLM

    from helpers import TINY

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(
        AutoConfig.for_model(family, **{**TINY[family], **fields}), dtype=torch.float32, attn_implementation="sdpa"
    )


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_tiled_mlp_switch_really_tiles(family, monkeypatch):
    """The equality above would also hold for a switch that did nothing: check the MLPs run through TiledMLP in the
    number of tiles asked for, one process (no process group: no all-reduce of the tile count)."""
    from deepspeed.runtime.sequence_parallel import ulysses_sp

    from framework.model import features
    from framework.model.features import apply_tiled_mlp

    agreements = []
    agree = features.tiled_mlp_shards
    monkeypatch.setattr(features, "tiled_mlp_shards", lambda *a: agreements.append(a) or agree(*a))
    calls = []
    orig = ulysses_sp.TiledMLP.apply
    monkeypatch.setattr(
        ulysses_sp.TiledMLP, "apply", lambda fn, mod, x, n, params: calls.append(n) or orig(fn, mod, x, n, params)
    )
    model = tiny_model(family)
    x = torch.randint(0, 384, (1, 200))
    ref = model(input_ids=x).logits
    apply_tiled_mlp(model, shards=0)
    out = model(input_ids=x).logits
    assert calls == [4, 4]  # 2 layers, ceil(200 / hidden 64) = 4 tiles each
    assert len(agreements) == 1  # agreed once per forward (an all-reduce when distributed), not per MLP call
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_offload_context_is_a_noop_on_cpu():
    """CheckpointHiddenStatesOffload on CPU: the checkpointed hidden states are marked, none is offloaded."""
    from framework.model.features import apply_features, offload_context
    from omegaconf import OmegaConf

    model = tiny_model()
    cfg = OmegaConf.create(
        {"liger": False, "tiled_mlp": False, "tiled_mlp_shards": 0, "activation_checkpointing": True}
    )
    apply_features(model, cfg=cfg)
    model.train()
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    ctx = offload_context(True)
    with ctx:
        model(input_ids=torch.randint(0, 384, (1, 64))).logits.sum().backward()
    assert ctx.stats.marked_tensors >= 2, ctx.stats  # one hidden-state input per decoder layer
    assert ctx.stats.offloaded_tensors == 0, ctx.stats  # CPU tensors: DeepSpeed skips them (no accelerator)


CHECKPOINTED = {"liger": False, "tiled_mlp": False, "tiled_mlp_shards": 0, "activation_checkpointing": True}


def force_offload_on_cpu(monkeypatch):
    """In this process, what FORCE_OFFLOAD_ON_CPU does in the CLI's workers: CPU tensors count as offloadable."""
    from deepspeed.runtime.activation_checkpointing import offload_activations as ds_offload

    monkeypatch.setattr(
        ds_offload._ActivationOffloadEngine,
        "_should_skip",
        lambda self, t: isinstance(t, torch.nn.Parameter) or t.numel() < 64,
    )


def checkpointed_reference(x):
    """A 4-layer tiny Llama with activation checkpointing, after one forward + backward on x (no offload)."""
    from framework.model.features import apply_features

    ref = apply_features(tiny_model(num_hidden_layers=4), cfg=OmegaConf.create(CHECKPOINTED))
    ref(input_ids=x, labels=x).loss.backward()
    return ref


def assert_same_grads(model, ref):
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("ours", [True, False])
def test_offload_lets_each_restored_hidden_state_go_after_its_layer(ours, monkeypatch):
    """The GPU path on CPU: DeepSpeed's offload engine is told CPU tensors are offloadable, so each checkpointed
    hidden state is copied out in forward and copied back in backward. Count the copies brought back that are still
    alive when the backward reaches the embedding (all 4 layers done): ours frees each after its layer's recompute;
    DeepSpeed's own class keeps every one until the context exits, so offloading would lower no GPU peak. The
    gradients equal those without offload either way."""
    import weakref

    from deepspeed.runtime.activation_checkpointing import offload_activations as ds_offload

    from framework.model.features import apply_features, hidden_states_offload

    force_offload_on_cpu(monkeypatch)
    x = torch.randint(0, 384, (1, 96))
    ref = checkpointed_reference(x)
    model = apply_features(tiny_model(num_hidden_layers=4), cfg=OmegaConf.create(CHECKPOINTED))
    model.train()

    cls = hidden_states_offload() if ours else ds_offload.CheckpointHiddenStatesOffload
    ctx = cls(keep_last_count=1, use_pin_memory=False)
    restored, alive_at_embedding = [], []
    restore = ctx._restore_tensor

    def watched_restore(tensor_id, cache=True):
        t = restore(tensor_id, cache)
        restored.append(weakref.ref(t))
        return t

    monkeypatch.setattr(ctx, "_restore_tensor", watched_restore)
    model.model.embed_tokens.weight.register_hook(
        lambda g: alive_at_embedding.append(sum(r() is not None for r in restored))
    )
    with ctx:
        model(input_ids=x, labels=x).loss.backward()
        stats = ctx.stats
    assert stats.offloaded_tensors == 3 and stats.kept_last_tensors == 1, stats  # 4 layers, the last stays
    assert len(restored) == 4
    assert alive_at_embedding == ([0] if ours else [4])
    assert_same_grads(model, ref)


@pytest.mark.parametrize("ours", [True, False])
def test_offload_finds_the_hidden_states_when_zero3_swaps_the_layer_inputs(ours, monkeypatch):
    """ZeRO-3 puts a forward pre-hook on every module that replaces its tensor inputs with the outputs of an
    autograd Function (DeepSpeed's `_post_backward_module_hook`). DeepSpeed marks the hidden states given to the
    layer's __call__, which are then not the tensor the checkpoint saves: nothing is offloaded. Our mark is made in
    the checkpoint function. Same forced offload as above, with that hook on each of the 4 layers."""
    from framework.model.features import apply_features, decoder_layers, hidden_states_offload

    class LikeZeRO3(torch.autograd.Function):  # DeepSpeed's PostBackwardFunctionModule, less the bookkeeping
        @staticmethod
        def forward(ctx, x):
            return x.detach()

        @staticmethod
        def backward(ctx, g):
            return g

    force_offload_on_cpu(monkeypatch)
    x = torch.randint(0, 384, (1, 96))
    ref = checkpointed_reference(x)
    model = tiny_model(num_hidden_layers=4)
    if ours:
        apply_features(model, cfg=OmegaConf.create(CHECKPOINTED))
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer in decoder_layers(model):
        layer.register_forward_pre_hook(lambda m, args: (LikeZeRO3.apply(args[0]), *args[1:]))
    model.train()
    ctx = hidden_states_offload()(keep_last_count=1, use_pin_memory=False)
    with ctx:
        model(input_ids=x, labels=x).loss.backward()
        stats = ctx.stats
    assert stats.offloaded_tensors == (3 if ours else 0), stats
    assert_same_grads(model, ref)
    if ours:  # the engine keeps one context for the run: the next step reuses the 3 host buffers, allocates none
        assert ctx._cpu_buffer_pool_count == 3
        with ctx:
            model(input_ids=x, labels=x).loss.backward()
        assert ctx.stats.offloaded_tensors == 3 and ctx._cpu_buffer_pool_count == 3


@pytest.mark.parametrize("recompute,keep,runs", [(True, 0, 4), (False, 0, 2), (True, 1, 3), (True, 2, 2)])
def test_recompute_attention_switch_decides_whether_backward_reruns_the_kernel(recompute, keep, runs):
    """Count the attention kernel's runs over one checkpointed forward + backward: 2 layers forward, and in the
    backward's recomputation one more for each layer that does not keep its output (model.recompute_attention=false:
    none; model.keep_attention_layers=N: all but N); the gradients are the same either way."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from framework.model.features import apply_features, attention_ops
    from omegaconf import OmegaConf

    kernels = set(attention_ops())

    class Count(TorchDispatchMode):
        runs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.runs += func in kernels
            return func(*args, **(kwargs or {}))

    x = torch.randint(0, 384, (1, 64))
    ref = tiny_model()
    ref(input_ids=x, labels=x).loss.backward()
    model = tiny_model()
    apply_features(
        model,
        cfg=OmegaConf.create(
            {
                "liger": False,
                "tiled_mlp": False,
                "tiled_mlp_shards": 0,
                "activation_checkpointing": True,
                "recompute_attention": recompute,
                "keep_attention_layers": keep,
            }
        ),
    )
    model.train()
    with Count():
        model(input_ids=x, labels=x).loss.backward()
    assert Count.runs == runs
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
