"""ZeRO-3 gathers a decoder layer at a time (framework.engine.build.gather_layers_whole: each decoder layer a ZeRO-3
leaf module) and that changes no number: against DeepSpeed's per-submodule hooks
(engine.deepspeed.zero_optimization.leaf_module.classes=[]), the same 3-step losses, grad norms and step-1 gradients,
with full fine-tuning and with LoRA. sp_size=2 (two ranks: the layer's gradients are reduced when its backward is
done, not parameter by parameter), activation checkpointing (the layer's recomputation fetches it again) and tiled
MLP forced to 4 tiles (the tiles reuse the gathered weights); and LoRA without checkpointing, where the layers'
input needs its gradient asked for (it failed before that). tests/unit/test_engine_config.py shows the layers are
marked; tests/distributed/test_sp_equivalence.py and test_alst.py compare ZeRO-3 runs, now whole-layer, with runs
without SP or without the ALST switches."""

import pytest

from helpers import assert_ok, assert_trajectories_agree, common_overrides, max_rel_diff

pytestmark = pytest.mark.slow

RTOL = 1e-5
ZERO3 = [
    "parallelism.sp_size=2",
    "engine.zero_stage=3",
    "model.activation_checkpointing=true",
    "model.tiled_mlp=true",
    "model.tiled_mlp_shards=4",
]
PER_SUBMODULE = ["+engine.deepspeed.zero_optimization.leaf_module.classes=[]"]
LORA = ["model.lora.r=8", "model.lora.alpha=16"]


NO_CHECKPOINTING = ["model.activation_checkpointing=false"]


@pytest.mark.parametrize(
    "tuning",
    [[], LORA, LORA + NO_CHECKPOINTING],
    ids=["full", "lora", "lora_no_checkpointing"],  # the last: the frozen embedding's output made to require a grad
)
def test_whole_layers_give_the_per_submodule_numbers(tuning, cli_runs, tiny_llama_dir):
    common = common_overrides(tiny_llama_dir) + ZERO3 + tuning
    whole = assert_ok(cli_runs.run(common))
    per_submodule = assert_ok(cli_runs.run(common + PER_SUBMODULE))
    assert_trajectories_agree(whole, per_submodule, rtol=RTOL)
    grads = whole.grads()
    assert grads and max_rel_diff(grads, per_submodule.grads()) < RTOL
    assert whole.losses[0] != whole.losses[2]
    assert any("lora_B" in name for name in grads) == bool(tuning)
