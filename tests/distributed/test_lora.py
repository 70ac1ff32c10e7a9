"""LoRA (model.lora.r > 0, peft) through the real CLI and worker path: the adapter starts as a no-op (step 1 equals the
base model's loss), SP changes nothing, only the adapter trains, the exported adapter loaded with peft onto the base
gives the next step's logged loss, the merged export equals peft's own merge, and a resumed LoRA run continues
exactly. Same runs as tests/distributed/test_export.py: 256-token rows in file order, constant LR, fp32 on CPU."""

import os

import pytest
import torch
from safetensors.torch import load_file

from helpers import assert_ok, assert_trajectories_agree, rows, run_job
from test_export import RTOL, export_command, load, loss_of, overrides, same_tensors

pytestmark = pytest.mark.slow

SP2 = ["parallelism.sp_size=2", "engine.zero_stage=3"]
LORA = ["model.lora.r=8", "model.lora.alpha=16"]


@pytest.fixture(scope="module")
def base3(cli_runs, tiny_llama_dir):
    return assert_ok(cli_runs.run(overrides(tiny_llama_dir, 3, *SP2, "checkpoint.every=3")))


@pytest.fixture(scope="module")
def lora3(cli_runs, tiny_llama_dir):
    return assert_ok(cli_runs.run(overrides(tiny_llama_dir, 3, *SP2, *LORA, "checkpoint.every=3")))


@pytest.fixture(scope="module")
def lora4(cli_runs, tiny_llama_dir):
    return assert_ok(cli_runs.run(overrides(tiny_llama_dir, 4, *SP2, *LORA, "checkpoint.export=false")), steps=4)


def test_step1_equals_the_base_model_and_training_moves_only_the_adapter(base3, lora3):
    assert lora3.losses[0] == pytest.approx(base3.losses[0], rel=1e-6)  # lora_B starts at zero
    assert lora3.losses[1] != pytest.approx(base3.losses[1], rel=1e-4)  # and then trains differently
    assert lora3.losses[2] != pytest.approx(lora3.losses[0], rel=1e-4)


def test_sp2_and_sp1_trajectories_agree(cli_runs, tiny_llama_dir, lora3):
    sp1 = assert_ok(
        cli_runs.run(
            overrides(tiny_llama_dir, 3, "parallelism.sp_size=1", "engine.zero_stage=3", *LORA, "checkpoint.every=3")
        )
    )
    assert_trajectories_agree(lora3, sp1)


def test_adapter_loaded_with_peft_gives_the_next_steps_loss(lora3, lora4, tiny_llama_dir):
    from peft import PeftModel

    out = os.path.join(lora3.run_dir, "model")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(out))
    assert all("lora_" in k for k in load_file(os.path.join(out, "adapter_model.safetensors")))
    for a, b in zip(lora3.metrics, lora4.metrics):
        assert a["loss"] == pytest.approx(b["loss"], rel=RTOL)
    model = PeftModel.from_pretrained(load(tiny_llama_dir), out).eval()
    assert loss_of(model, rows(3)) == pytest.approx(lora4.metrics[3]["loss"], rel=RTOL)


def test_merged_export_equals_peft_merge_and_the_base_weights_stay_frozen(lora3, lora4, tiny_llama_dir, tmp_path):
    from peft import PeftModel

    ckpt = os.path.join(lora3.run_dir, "checkpoints", "step_3")
    same_tensors(
        os.path.join(lora3.run_dir, "model"),
        export_command(ckpt, str(tmp_path / "adapter")),
        "adapter_model.safetensors",
    )  # the command writes the run's own adapter
    merged_dir = export_command(ckpt, str(tmp_path / "merged"), "--merged")
    merged = load_file(os.path.join(merged_dir, "model.safetensors"))
    peft_merged = PeftModel.from_pretrained(load(tiny_llama_dir), os.path.join(lora3.run_dir, "model"))
    reference = peft_merged.merge_and_unload().state_dict()
    base = load(tiny_llama_dir).state_dict()
    assert sorted(merged) == sorted(reference)
    changed = 0
    for k, w in merged.items():
        torch.testing.assert_close(w, reference[k], rtol=1e-6, atol=1e-7)
        if "proj" in k:
            changed += not torch.equal(w, base[k])
        else:  # embeddings, norms, LM head: no adapter, frozen, exactly the base model's
            assert torch.equal(w, base[k]), k
    assert changed == 14  # the 7 projections of both layers moved
    assert loss_of(load(merged_dir), rows(3)) == pytest.approx(lora4.metrics[3]["loss"], rel=RTOL)


def test_lora_composes_with_zero2_checkpointing_tiled_mlp_and_tiled_loss(cli_runs, tiny_llama_dir):
    """The features against the same ZeRO-2 run without them (against the ZeRO-3 run, the two stages' fp32 reduction
    orders alone move the grad norm by ~1e-5: 0.14141454 against 0.14141302 with DeepSpeed 0.19.x on CPU)."""
    plain = assert_ok(
        cli_runs.run(
            overrides(tiny_llama_dir, 3, "parallelism.sp_size=2", "engine.zero_stage=2", *LORA, "checkpoint.every=3")
        )
    )
    run = assert_ok(
        cli_runs.run(
            overrides(
                tiny_llama_dir,
                3,
                "parallelism.sp_size=2",
                "engine.zero_stage=2",
                *LORA,
                "checkpoint.every=3",
                "model.activation_checkpointing=true",
                "model.tiled_mlp=true",
                "model.tiled_mlp_shards=2",
                "loss.tiled=true",
                "loss.tiled_shards=2",
            )
        )
    )
    assert_trajectories_agree(run, plain)


def test_resumed_lora_run_continues_exactly(tiny_llama_dir, lora4, tmp_path):
    full = assert_ok(
        run_job(
            overrides(tiny_llama_dir, 4, *SP2, *LORA, "checkpoint.every=1", "checkpoint.export=false"),
            str(tmp_path / "full"),
        ),
        steps=4,
    )
    assert_trajectories_agree(full, lora4)
    ckpt = os.path.join(full.run_dir, "checkpoints", "step_2")
    resumed = assert_ok(
        run_job(
            overrides(
                tiny_llama_dir,
                4,
                *SP2,
                *LORA,
                "checkpoint.every=1",
                "checkpoint.export=false",
                f"checkpoint.resume={ckpt}",
                "checkpoint.trust_resume=true",
            ),
            str(tmp_path / "resumed"),
        ),
        steps=2,
    )
    for a, b in zip(resumed.metrics, full.metrics[2:], strict=True):
        assert (a["step"], a["loss"]) == (b["step"], pytest.approx(b["loss"], rel=1e-6))


def test_merged_export_at_the_end_of_a_run_equals_the_commands(cli_runs, tiny_llama_dir, tmp_path):
    """checkpoint.export_merged=true: the run's own merged export (gathered in the workers) and the export command's
    (from the fp32 checkpoint) hold the same tensors."""
    run = assert_ok(
        cli_runs.run(overrides(tiny_llama_dir, 3, *SP2, *LORA, "checkpoint.every=3", "checkpoint.export_merged=true"))
    )
    ckpt = os.path.join(run.run_dir, "checkpoints", "step_3")
    same_tensors(
        os.path.join(run.run_dir, "model"),
        export_command(ckpt, str(tmp_path / "merged"), "--merged"),
        "model.safetensors",
    )
