"""Every bad input that used to fail inside the workers (or train silently) stops before any worker starts: the CLI
exits with status 2 and one stderr line `config error: key=value: rule. Fix: fix`, no traceback, and result.json says
so, unless the run directory holds another run, whose result.json stays. One table, one CLI run per row; each stops
in validation (config.yaml, written before the workers start, is never written)."""

import json
import os

import pytest

from framework.checkpoint import run_settings, write_manifest
from helpers import compose, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_llama_dir):
    """Bad data, a model directory without weights, a folder that is not a checkpoint, a used run directory."""
    import shutil

    d = tmp_path_factory.mktemp("bad_inputs")
    ids = [list(range(1, 40)) for _ in range(8)]
    (d / "ids.jsonl").write_text("\n".join(json.dumps({"input_ids": x}) for x in ids))
    (d / "no_targets.jsonl").write_text("\n".join(json.dumps({"input_ids": x, "labels": [-100] * len(x)}) for x in ids))
    (d / "latin1.jsonl").write_bytes(b'{"text": "a first row of plain text"}\n{"text": "caf\xe9 au lait"}\n' * 4)
    from transformers import ByT5Tokenizer

    ByT5Tokenizer().save_pretrained(str(d / "byt5"))
    (d / "empty_texts.jsonl").write_text('{"text": ""}\n' * 8)
    (d / "empty.jsonl").write_text("")
    os.symlink(d / "loop_b.jsonl", d / "loop_a.jsonl")
    os.symlink(d / "loop_a.jsonl", d / "loop_b.jsonl")
    (d / "no_weights").mkdir()
    shutil.copy(os.path.join(tiny_llama_dir, "config.json"), d / "no_weights" / "config.json")
    (d / "notes").mkdir()
    (d / "notes" / "readme.txt").write_text("not a checkpoint")
    return d


def used_run(run_dir, **_):
    """A run directory an earlier run trained in (its metrics and result stay untouched)."""
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        f.write('{"step": 1, "loss": 5.0}\n')
    with open(os.path.join(run_dir, "result.json"), "w") as f:
        f.write('{"status": "ok", "steps": 1}')


def saved_at_step_2(run_dir, **_):
    """used_run plus a complete checkpoint at step 2 of smoke_cpu's defaults."""
    used_run(run_dir)
    step_dir = os.path.join(run_dir, "checkpoints", "step_2")
    os.makedirs(step_dir)
    with open(os.path.join(step_dir, "mp_rank_00_model_states.pt"), "wb") as f:
        f.write(b"x" * 64)
    cfg = compose([])
    write_manifest(
        step_dir,
        2,
        run_settings(
            parallelism=cfg.parallelism, data=cfg.data, train=cfg.train, optim=cfg.optim, tokenizer=None, world=2
        ),
    )


def locked(run_dir, **_):
    """Another job (this test's own process) holds the run directory's lock (its flock, until this process ends)."""
    from framework.rundir import RunLock

    os.makedirs(run_dir)
    RunLock(run_dir).acquire()


# (id, overrides ({d}: the files fixture's folder), setup(run_dir) or None, key=value the message opens with,
#  a fragment of the rule, whether result.json records the error)
BAD = [
    (
        "packed_rows_not_splitting_into_sp_shards",
        ["data=hf", "data.path={d}/ids.jsonl", "data.packing=true", "data.seq_length=15"],
        None,
        "data.seq_length=15",
        "do not split into sp_size=2",
        True,
    ),
    (
        "no_trainable_token",
        ["data=hf", "data.path={d}/no_targets.jsonl", "data.seq_length=16"],
        None,
        "data.path=",
        "no row has a token to train on",
        True,
    ),
    (
        "not_utf8_jsonl",
        ["data=hf", "data.path={d}/latin1.jsonl", "data.tokenizer={d}/byt5", "data.seq_length=16"],
        None,
        "data.path=",
        "holds bytes that are not UTF-8 text",
        True,
    ),
    (
        "only_empty_texts",
        [
            "data=hf",
            "data.path={d}/empty_texts.jsonl",
            "data.tokenizer={d}/byt5",
            "data.seq_length=16",
            "data.packing=true",
        ],
        None,
        "data.path=",
        "no row has a token to predict: all 8 documents are 1 token long",
        True,
    ),
    (
        "empty_jsonl",
        ["data=hf", "data.path={d}/empty.jsonl", "data.tokenizer={d}/byt5", "data.seq_length=16"],
        None,
        "data.path=",
        "empty.jsonl is empty (0 bytes)",
        True,
    ),
    (
        "symlink_loop",
        ["data=hf", "data.path={d}/loop_a.jsonl", "data.tokenizer={d}/byt5", "data.seq_length=16"],
        None,
        "data.path=",
        "is a loop of symbolic links",
        True,
    ),
    (
        "model_dir_without_weights",
        ["model.name_or_path={d}/no_weights"],
        None,
        "model.name_or_path=",
        "holds config.json but no weights",
        True,
    ),
    (
        "resume_not_a_checkpoint",
        ["checkpoint.resume={d}/notes", "checkpoint.trust_resume=true"],
        None,
        "checkpoint.resume=",
        "is not a complete checkpoint (notes: no manifest.json",
        True,
    ),
    (
        "resume_outside_the_run_directory",
        ["checkpoint.resume={d}/notes"],
        None,
        "checkpoint.resume=",
        "is outside this run directory",
        True,
    ),
    (
        "unknown_key_added_with_plus",  # the command line's check (framework.help), before Hydra composes
        ["+checkpoint.evry=1"],
        None,
        "checkpoint.evry=1",
        "no such config key",
        False,  # nothing composed, nothing written: no result.json
    ),
    ("save_every_negative", ["checkpoint.every=-1"], None, "checkpoint.every=-1", "must be 0 or more", True),
    ("eval_every_negative", ["eval.every=-1"], None, "eval.every=-1", "must be 0 or more", True),
    ("lr_negative", ["optim.lr=-0.001"], None, "optim.lr=-0.001", "must be 0 or more", True),
    ("seed_negative", ["train.seed=-1"], None, "train.seed=-1", "must be 0 or more", True),
    (
        "num_samples_cannot_feed_a_step",
        ["data.num_samples=1"],
        None,
        "data.num_samples=1",
        "cannot feed one step",
        True,
    ),
    (
        "lengths_with_nothing_to_predict",
        ["data.lengths=[0]", "parallelism.sp_seq_length_is_variable=true"],
        None,
        "data.lengths=[0]",
        "no token to predict",
        True,
    ),
    (
        "reduce_bucket_size_zero",
        ["engine.reduce_bucket_size=0"],
        None,
        "engine.reduce_bucket_size=0",
        "at least 1",
        True,
    ),
    ("num_samples_zero", ["data.num_samples=0"], None, "data.num_samples=0", "at least one row", True),
    ("offload_ratio_out_of_range", ["engine.offload_ratio=1.5"], None, "engine.offload_ratio=1.5", "at most 1", True),
    ("eval_steps_zero", ["eval.every=1", "eval.steps=0"], None, "eval.steps=0", "at least 1", True),
    ("fresh_run_into_a_used_directory", [], used_run, "checkpoint.resume=None", "already holds a run", False),
    (
        "resume_latest_with_nothing_to_resume",
        ["checkpoint.resume=latest"],
        None,
        "checkpoint.resume='latest'",
        "no complete checkpoint",
        True,
    ),
    (
        "resume_with_a_changed_setting",
        ["checkpoint.resume=latest", "data.seq_length=512"],
        saved_at_step_2,
        "checkpoint.resume='latest'",
        "(data.seq_length: 256 -> 512)",
        False,
    ),
    ("run_directory_locked_by_a_live_job", [], locked, "hydra.run.dir=", f"another job (pid {os.getpid()}", False),
]


def result_text(run_dir):
    path = os.path.join(run_dir, "result.json")
    return open(path).read() if os.path.exists(path) else None


@pytest.fixture(scope="module")
def outcomes(files, tmp_path_factory):
    """Every row's command, two at a time (each stops in its launching process, one core each), the forkserver off
    (it imports for workers that never start; tests/e2e/test_cli.py covers a config error with it on):
    {id: (run, run_dir, result.json before)}."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers import clean_env

    root = tmp_path_factory.mktemp("bad_input_runs")
    jobs = {}
    for name, overrides, setup, *_ in BAD:
        run_dir = str(root / name)
        if setup:
            setup(run_dir)
        overrides = [o.format(d=files) for o in overrides]
        if "data=hf" in overrides:
            overrides.append(f"data.cache_dir={files}/cache")  # not the user's ~/.cache
        jobs[name] = (overrides, run_dir, result_text(run_dir))
    env = clean_env(FRAMEWORK_FORKSERVER="0")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {n: pool.submit(run_cli, o, d, env=env, timeout=180) for n, (o, d, _) in jobs.items()}
        return {n: (runs[n].result(), jobs[n][1], jobs[n][2]) for n in jobs}


@pytest.mark.parametrize("name,opening,rule,recorded", [(b[0], *b[3:]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_stops_before_any_worker_with_one_line(name, opening, rule, recorded, outcomes):
    run, run_dir, before = outcomes[name]
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr + run.stdout, run.describe()
    assert not os.path.exists(os.path.join(run_dir, "config.yaml"))  # written once validation passed, before launch
    errors = [line for line in lines if line.startswith("config error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"config error: {opening}"), run.stderr
    assert rule in errors[0] and ". Fix: " in errors[0], errors[0]
    if recorded:
        assert run.result["status"] == "failed" and run.result["error"] == errors[0], run.result
    else:  # the run directory holds another run (or another job): its result.json stays as it was
        assert result_text(run_dir) == before
