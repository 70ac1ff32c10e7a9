"""What a run exports is what it trained (an invariant: README, "Correctness rules the tests hold"), checked through the
real CLI and worker path: the directory a run writes at its end, loaded in plain transformers (and peft), gives the loss
the framework logs for the next step on the next row; the export command on a saved checkpoint writes the same tensors.

Runs: tiny models loaded from a directory, synthetic rows of 256 tokens in file order (step k reads row k-1), a
constant LR (so a 3-step and a 4-step run train their first 3 steps alike), fp32 on CPU. The 4-step run's step-4 loss
is computed by the framework on row 3 with the weights after 3 steps: the 3-step run's export must give it.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO, assert_ok, clean_env, rows

pytestmark = pytest.mark.slow

RTOL = 1e-5


def overrides(model_dir, steps, *extra):
    return [
        f"model.name_or_path={model_dir}",
        f"train.max_steps={steps}",
        "data.seq_length=256",
        "data.shuffle=false",
        "optim.schedule=constant",
        "optim.lr=1e-2",
        *extra,
    ]


def loss_of(model, row: torch.Tensor) -> float:
    """The causal-LM loss of `row` [1, s]: CE summed over the shifted labels / their count (the framework's)."""
    with torch.no_grad():
        logits = model(input_ids=row).logits.float()
    return torch.nn.functional.cross_entropy(logits[0, :-1], row[0, 1:], reduction="mean").item()


def load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def export_command(checkpoint, out, *flags):
    p = subprocess.run(
        [sys.executable, "-m", "framework.export", checkpoint, out, *flags],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def same_tensors(a_dir, b_dir, name):
    a, b = load_file(os.path.join(a_dir, name)), load_file(os.path.join(b_dir, name))
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return a


CASES = {  # (model fixture, parallel and ZeRO overrides)
    "llama_sp2_zero3": ("tiny_llama_dir", ["parallelism.sp_size=2", "engine.zero_stage=3"]),
    "tied_llama_sp2_zero2": ("tiny_llama_tied_dir", ["parallelism.sp_size=2", "engine.zero_stage=2"]),
    "qwen3_one_process_zero3": ("tiny_qwen3_dir", ["parallelism.sp_size=1", "engine.zero_stage=3"]),
}


@pytest.mark.parametrize("case", CASES)
def test_export_loads_in_transformers_and_gives_the_next_steps_loss(case, request, cli_runs):
    fixture, parallel = CASES[case]
    model_dir = request.getfixturevalue(fixture)
    longer = assert_ok(cli_runs.run(overrides(model_dir, 4, *parallel, "checkpoint.export=false")), steps=4)
    run = assert_ok(cli_runs.run(overrides(model_dir, 3, *parallel, "checkpoint.every=3")), steps=3)
    model_dir_out = os.path.join(run.run_dir, "model")
    files = set(os.listdir(model_dir_out))
    assert {"config.json", "generation_config.json", "model.safetensors"} <= files, files
    assert not [f for f in os.listdir(run.run_dir) if f.startswith(".model")]  # no temporary left behind
    model = load(model_dir_out)
    assert model.config.use_cache is True
    for i, m in enumerate(longer.metrics[:3]):  # the two runs trained alike
        assert run.metrics[i]["loss"] == pytest.approx(m["loss"], rel=RTOL)
    assert loss_of(model, rows(3)) == pytest.approx(longer.metrics[3]["loss"], rel=RTOL)
    assert loss_of(model, rows(3)) != pytest.approx(loss_of(load(model_dir), rows(3)), rel=1e-4)  # it trained
    if case.startswith("tied"):
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        assert "lm_head.weight" not in load_file(os.path.join(model_dir_out, "model.safetensors"))
    # the command, from the checkpoint of the last step: the same files' contents, on the CPU
    out = export_command(os.path.join(run.run_dir, "checkpoints", "step_3"), os.path.join(run.run_dir, "cmd"))
    same_tensors(model_dir_out, out, "model.safetensors")
    assert json.load(open(os.path.join(out, "config.json"))) == json.load(
        open(os.path.join(model_dir_out, "config.json"))
    )


def test_shards_past_the_limit_with_an_index(tmp_path):
    """Past max_bytes the weights go into numbered files with an index that transformers reads."""
    from framework.export import write_weights

    tensors = {f"w{i}": torch.full((256,), float(i)) for i in range(5)}  # 1 KiB each
    entries = [(k, t.numel() * 4, lambda t=t: t) for k, t in tensors.items()]
    write_weights(str(tmp_path), entries, write=True, max_bytes=2048)
    index = json.load(open(tmp_path / "model.safetensors.index.json"))
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert index["metadata"]["total_size"] == 5 * 1024
    for k, f in index["weight_map"].items():
        assert torch.equal(load_file(str(tmp_path / f))[k], tensors[k])


def test_export_command_refuses_what_is_not_a_checkpoint(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "framework.export", str(tmp_path), str(tmp_path / "out")],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "is not a checkpoint of a run directory" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()
