"""What a new user sees (issue 27): the project's --help, "did you mean" for a key typo, one line for a required key
left unset, the start lines of a fine-tune (run directory, config diff, corpus figures and epochs), train.log, a save by
wall clock, a plan that does not fit ending [no-fit] with a non-zero exit, no run directory left by a mistake, and a
resume by run directory that extends a constant-LR run. Two training runs in all, shared by the tests below."""

import json
import os
import subprocess
import sys

import pytest

from helpers import clean_env, save_tiny_model

pytestmark = pytest.mark.slow

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def framework(args, cwd, timeout=300):
    """The console script, as a user types it, from `cwd`."""
    script = os.path.join(os.path.dirname(sys.executable), "framework")
    return subprocess.run([script, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)


def test_help_is_the_projects_page_with_experiments_groups_and_keys(tmp_path):
    p = framework(["--help"], tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    for text in (
        "Usage: framework",
        "== Experiments (+experiment=NAME) ==",
        "finetune_lora",
        "smoke_cpu",
        "== Config groups (group=option) ==",
        "tiny_llama (default)",
        "optim.lr=1e-05",
        "Peak learning rate",
        "checkpoint.every_minutes",
        "train.log",
        "framework -sc install=bash",
    ):
        assert text in out, text
    assert "oc.env" not in out and "oc.decode" not in out and "powered by Hydra" not in out
    assert not os.path.exists(tmp_path / "outputs")


@pytest.mark.parametrize(
    "override,near",
    [
        ("optim.lrr=1e-4", "optim.lr"),
        ("+optim.lrr=1e-4", "optim.lr"),
        ("train.max_step=3", "train.max_steps"),
        ("checkpoint.every_minute=5", "checkpoint.every_minutes"),
    ],
)
def test_key_typo_gets_the_nearest_key_in_one_line(override, near, tmp_path):
    p = framework(["+experiment=smoke_cpu", override], tmp_path, timeout=120)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"did you mean `{near}`?" in lines[0], p.stderr
    assert lines[0].startswith(f"config error: {override.split('=')[0].lstrip('+')}=") and ". Fix: " in lines[0]
    assert not os.path.exists(tmp_path / "outputs")  # nothing composed, nothing created


def test_cfg_resolve_with_a_required_key_unset_says_so_in_one_line(tmp_path):
    p = framework(["+experiment=finetune_lora", "--cfg", "job", "--resolve"], tmp_path, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be given" in lines[0] and "Fix: add " in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_config_error_leaves_no_run_directory_under_outputs(tmp_path):
    p = framework(["+experiment=smoke_cpu", "parallelism.sp_size=3"], tmp_path, timeout=200)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("config error: parallelism.sp_size=3: ")
    assert not os.path.exists(tmp_path / "outputs") or not os.listdir(tmp_path / "outputs")


def test_plan_that_does_not_fit_says_so_first_and_last_and_exits_non_zero(tmp_path):
    p = framework(
        ["+experiment=llama8b_500k", "plan=true", "hardware.host_ram_gib=64", "hardware.gpu_mem_gib=79.6"],
        tmp_path,
        timeout=200,
    )
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    opening = next(line for line in lines if line.startswith("This job"))
    assert opening.startswith("This job does not fit: it runs out of host RAM first"), opening
    for said in ("8 GPUs", "79.6 GiB each", "64 GiB of host RAM per node", "8 ranks", "500,000 tokens"):
        assert said in opening, (said, opening)
    assert lines[-1].startswith("[no-fit] ") and "hardware.host_ram_gib=" in lines[-1], lines[-1]
    assert "host RAM per node (GiB)" in p.stdout  # the table's keys in words
    # a plan's directory sits apart from the runs
    assert os.listdir(tmp_path / "outputs") == ["plans"]
    (day,) = os.listdir(tmp_path / "outputs" / "plans")
    (job,) = os.listdir(tmp_path / "outputs" / "plans" / day)
    assert json.load(open(tmp_path / "outputs" / "plans" / day / job / "plan.json"))["fits"] is False


@pytest.fixture(scope="module")
def finetune(tmp_path_factory):
    """A LoRA fine-tune of a tiny Llama on 24 chat rows, saved by time only, constant LR; then the same command
    resumed by its run directory with train.max_steps raised from 3 to 5 (from another working directory)."""
    from transformers import ByT5Tokenizer

    root = tmp_path_factory.mktemp("first_contact")
    model_dir = save_tiny_model(str(root / "base"), "llama")
    tok = ByT5Tokenizer()
    tok.chat_template = TEMPLATE
    tok.save_pretrained(model_dir)
    chat = root / "chat.jsonl"
    with open(chat, "w") as f:
        for i in range(24):
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"what is {i} + {i}?"},
                            {"role": "assistant", "content": f"{i} + {i} = {2 * i}."},
                        ]
                    }
                )
                + "\n"
            )
    run_dir = root / "job"
    common = [
        "+experiment=finetune_lora",
        f"model.name_or_path={model_dir}",
        f"data.path={chat}",
        "data.seq_length=128",
        f"data.cache_dir={root / 'cache'}",
        "train.device=cpu",
        "optim.schedule=constant",
        "optim.warmup_steps=0",
        "checkpoint.every=0",
        "checkpoint.every_minutes=0.0001",
    ]
    first = framework(common + ["train.max_steps=3", f"hydra.run.dir={run_dir}"], root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    second = framework(common + ["train.max_steps=5", f"checkpoint.resume={run_dir}"], elsewhere)
    return run_dir, first, second, elsewhere


def test_fine_tune_says_what_it_is_about_to_do(finetune):
    run_dir, first, _, _ = finetune
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert f"run directory: {run_dir}" in out
    diff = next(line for line in out.splitlines() if line.startswith("config, where it differs from the defaults: "))
    for key in ("model.lora.r=16", "data.seq_length=128", "optim.schedule=constant", "train.max_steps=3"):
        assert key in diff.split(), (key, diff)
    corpus = next(line for line in out.splitlines() if line.startswith("corpus "))
    assert "24 documents" in corpus and "rows of 128 tokens" in corpus and "tokens with loss" in corpus, corpus
    assert "train.max_steps=3 x 1 rows per step = 3 rows: " in out and " epochs" in out


def test_train_log_holds_the_console_output(finetune):
    """(A repeated warning is kept once: tests/unit/test_first_contact_parts.py; this run has none left to repeat.)"""
    run_dir, first, _, _ = finetune
    log, resumed = open(run_dir / "train.log").read().split("resume directory: ")  # the resume appended its own
    assert "step     5/5 | loss " in resumed
    for step in (1, 2, 3):
        assert f"step     {step}/3 | loss " in log
    assert "corpus " in log and f"[ok] {run_dir}" in log
    steps = [line for line in first.stdout.splitlines() if line.startswith("step ")]
    assert steps and all("TFLOP/s" not in s and "mfu" not in s and "tok/s/rank" in s for s in steps), steps  # CPU


def test_a_run_saves_by_wall_clock(finetune):
    run_dir, _, _, _ = finetune
    manifests = sorted(os.listdir(run_dir / "checkpoints"))
    assert {"step_1", "step_2", "step_3"} <= set(manifests), manifests  # checkpoint.every=0: by time alone
    assert os.path.exists(run_dir / "checkpoints" / "step_1" / "manifest.json")


def test_resume_by_run_directory_continues_it_and_extends_a_constant_lr_run(finetune):
    run_dir, _, second, elsewhere = finetune
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"resume directory: {run_dir} (from step 3)" in second.stdout
    assert f"[ok] {run_dir}" in second.stdout
    metrics = [json.loads(line) for line in open(run_dir / "metrics.jsonl").read().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    assert len({m["lr"] for m in metrics}) == 1  # constant
    assert json.load(open(run_dir / "result.json"))["steps"] == 5
    assert not os.path.exists(elsewhere / "outputs")  # the run directory was the resumed one, not a new one


def test_a_cpu_run_shows_no_start_up_noise_of_other_packages(finetune):
    """DeepSpeed's accelerator detection warning, its CPU op's "built successfully" per rank and torch's deprecation
    warning for the all-gather DeepSpeed calls: none of them is the user's to act on."""
    _, first, _, _ = finetune
    console = first.stdout + first.stderr
    for noise in ("Setting accelerator to CPU", "built successfully", "all_gather_into_tensor", "FutureWarning"):
        assert noise not in console, (noise, console[:3000])
