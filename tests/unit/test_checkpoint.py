"""Checkpoints complete or invisible, and the run directory against checkpoint.resume
(framework.engine.rules.check_resume, called by validate() before any worker starts): which checkpoint resume finds,
what it refuses and why.

The checkpoints here are folders of small files with the manifest a save writes (framework.checkpoint.write_manifest);
tests/distributed/test_resume.py resumes real ones."""

import json
import os

import pytest

from framework.checkpoint import newest_complete, prune, resolve, run_settings, write_manifest
from framework.checkpoint.store import checksum, listed_files
from framework.errors import ConfigError
from framework.rundir import RunLock, prepare
from framework.validate import validate
from helpers import compose


def settings_of(overrides, world=2):
    cfg = compose(overrides)
    return run_settings(
        parallelism=cfg.parallelism,
        data=cfg.data,
        train=cfg.train,
        optim=cfg.optim,
        tokenizer=cfg.data.tokenizer or cfg.model.name_or_path,
        world=world,
    )


def make_checkpoint(run_dir, step, overrides=(), files=(("model_states.pt", 100), ("optim_states.pt", 300))):
    step_dir = os.path.join(run_dir, "checkpoints", f"step_{step}")
    os.makedirs(step_dir)
    for name, size in files:
        with open(os.path.join(step_dir, name), "wb") as f:
            f.write(b"x" * size)
    write_manifest(
        step_dir,
        step,
        settings_of(list(overrides)),
        {rel: checksum(os.path.join(step_dir, rel)) for rel in listed_files(step_dir)},
    )  # as a save does
    with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:  # as DeepSpeed's rank 0 writes it
        f.write(f"step_{step}")
    return step_dir


def test_latest_skips_torn_unfinished_and_vanished_checkpoints_naming_why(tmp_path):
    run = str(tmp_path)
    make_checkpoint(run, 1)
    torn = make_checkpoint(run, 2)
    with open(os.path.join(torn, "optim_states.pt"), "r+b") as f:
        f.truncate(120)  # a save cut short
    unfinished = make_checkpoint(run, 3)
    os.remove(os.path.join(unfinished, "manifest.json"))  # killed before its manifest
    gone = make_checkpoint(run, 4)
    import shutil

    shutil.rmtree(gone)  # DeepSpeed's `latest` still names it
    found, skipped = resolve("latest", run)
    assert found == os.path.join(run, "checkpoints", "step_1")
    assert skipped == [
        "step_4: its folder is gone",
        "step_3: no manifest.json (its save did not finish)",
        "step_2: optim_states.pt has 120 bytes, its manifest says 300",
    ]
    # a checkpoints/ folder given as checkpoint.resume is read the same way; a torn step_N given by name is not taken
    assert resolve(os.path.join(run, "checkpoints"), run)[0] == found
    assert resolve(torn, run)[0] is None


def flip_a_byte(path, at=10):
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_latest_skips_a_checkpoint_whose_bytes_changed_unless_checksums_are_off(tmp_path):
    """Bytes flipped inside a file (its size unchanged): resume=latest skips the checkpoint, naming the file;
    checkpoint.verify_checksums=false (huge checkpoints) compares sizes only and takes it."""
    run = str(tmp_path)
    make_checkpoint(run, 1)
    make_checkpoint(run, 2)
    flip_a_byte(os.path.join(run, "checkpoints", "step_2", "optim_states.pt"))
    found, skipped = resolve("latest", run, verify=True)
    assert found == os.path.join(run, "checkpoints", "step_1")
    assert skipped == ["step_2: optim_states.pt does not match its checksum (its bytes changed after the save)"]
    checked = validate(compose(["checkpoint.resume=latest"]), run_dir=run)
    assert (checked.resume_step, checked.resume_dir) == (1, found)
    checked = validate(compose(["checkpoint.resume=latest", "checkpoint.verify_checksums=false"]), run_dir=run)
    assert checked.resume_step == 2


def test_a_manifest_naming_another_step_than_its_folder_is_skipped(tmp_path):
    """A manifest edited to say step 3 on step_2: resume=latest does not trust it (the run would cut metrics.jsonl at
    3 while DeepSpeed loads step 2)."""
    run = str(tmp_path)
    make_checkpoint(run, 1)
    step_dir = make_checkpoint(run, 2)
    manifest = json.load(open(os.path.join(step_dir, "manifest.json")))
    manifest["step"] = 3
    json.dump(manifest, open(os.path.join(step_dir, "manifest.json"), "w"))
    found, skipped = resolve("latest", run)
    assert found.endswith("step_1") and skipped == ["step_2: its manifest.json says step 3, its folder step 2"]


def test_load_refuses_a_checkpoint_whose_own_step_is_not_its_manifests(tmp_path):
    """DeepSpeed's client state (the checkpoint's own step) is checked against the manifest after the load."""
    from framework.checkpoint import load_checkpoint

    step_dir = make_checkpoint(str(tmp_path), 2)

    class Engine:
        global_rank = 0

        def __init__(self, step):
            self.step = step

        def load_checkpoint(self, root, tag):
            return None, {"step": self.step}

    assert load_checkpoint(Engine(2), step_dir, str(tmp_path)) == 2
    with pytest.raises(RuntimeError, match="client state says step 5, its manifest.json step 2"):
        load_checkpoint(Engine(5), step_dir, str(tmp_path))


def test_keep_last_deletes_older_checkpoints_torn_ones_included(tmp_path):
    run = str(tmp_path)
    for step in (1, 2, 3, 4):
        make_checkpoint(run, step)
    os.remove(os.path.join(run, "checkpoints", "step_3", "manifest.json"))
    assert prune(os.path.join(run, "checkpoints"), 2) == ["step_1"]  # step_3 is torn: step_4 and step_2 are kept
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["latest", "step_2", "step_3", "step_4"]
    assert prune(os.path.join(run, "checkpoints"), 1) == ["step_3", "step_2"]
    assert prune(os.path.join(run, "checkpoints"), 0) == []
    assert newest_complete(os.path.join(run, "checkpoints"))[0].endswith("step_4")


def refused(overrides, run_dir):
    with pytest.raises(ConfigError) as info:
        validate(compose(overrides), run_dir=str(run_dir))
    assert "\n" not in str(info.value) and "Fix: " in str(info.value)
    return info.value


def test_fresh_run_into_a_used_directory_is_refused(tmp_path):
    assert validate(compose([]), run_dir=str(tmp_path)).resume_step == 0  # empty: fine
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    err = refused([], tmp_path)
    assert err.key == "checkpoint.resume" and "already holds a run (metrics.jsonl)" in err.rule
    assert "checkpoint.resume=latest" in err.fix and "hydra.run.dir" in err.fix


def test_resume_latest_with_nothing_to_resume_is_refused(tmp_path):
    err = refused(["checkpoint.resume=latest"], tmp_path)
    assert err.rule.startswith("no complete checkpoint in") and "checkpoint.resume=null" in err.fix
    make_checkpoint(str(tmp_path), 2)
    os.remove(tmp_path / "checkpoints" / "step_2" / "manifest.json")
    err = refused(["checkpoint.resume=latest"], tmp_path)
    assert "(step_2: no manifest.json (its save did not finish))" in err.rule


def test_resume_outside_the_run_directory_needs_trust_and_a_checkpoint(tmp_path):
    other = tmp_path / "other_run"
    step_dir = make_checkpoint(str(other), 3)
    err = refused([f"checkpoint.resume={step_dir}"], tmp_path / "run")
    assert "outside this run directory" in err.rule and "weights_only=False" in err.rule
    assert "checkpoint.trust_resume=true" in err.fix
    assert (
        validate(
            compose([f"checkpoint.resume={step_dir}", "checkpoint.trust_resume=true"]), run_dir=str(tmp_path / "run")
        ).resume_step
        == 3
    )
    not_a_checkpoint = tmp_path / "run" / "notes"
    not_a_checkpoint.mkdir(parents=True)
    err = refused([f"checkpoint.resume={not_a_checkpoint}"], tmp_path / "run")  # inside: trusted, but no checkpoint
    assert err.rule == "is not a complete checkpoint (notes: no manifest.json (its save did not finish))"


# (changed override, the key the message names, its value in the checkpoint -> now)
CHANGES = [
    ("parallelism.sp_size=4", "parallelism.sp_size", "2 -> 4"),
    ("parallelism.dp_shard_size=2", "parallelism.dp_shard_size", "1 -> 2"),
    ("data.seq_length=512", "data.seq_length", "256 -> 512"),
    ("data.packing=true", "data.packing", "False -> True"),
    ("data.shuffle=false", "data.shuffle", "True -> False"),
    ("data.num_samples=99", "data.num_samples", "64 -> 99"),
    ("train.micro_batch_size=2", "train.micro_batch_size", "1 -> 2"),
    ("train.gradient_accumulation_steps=2", "train.gradient_accumulation_steps", "1 -> 2"),
    ("train.seed=7", "train.seed", "42 -> 7"),
    ("train.max_steps=8", "train.max_steps", "4 -> 8"),
    ("optim.schedule=linear", "optim.schedule", "'cosine' -> 'linear'"),
    ("optim.lr=0.01", "optim.lr", "0.001 -> 0.01"),
    ("optim.warmup_steps=2", "optim.warmup_steps", "0 -> 2"),
]
BASE = ["data.seq_length=256", "train.max_steps=4", "optim.lr=0.001"]


@pytest.mark.parametrize("override,key,change", CHANGES, ids=[c[1] for c in CHANGES])
def test_resume_refuses_a_changed_setting_by_name(override, key, change, tmp_path):
    make_checkpoint(str(tmp_path), 2, BASE)
    assert validate(compose(BASE + ["checkpoint.resume=latest"]), run_dir=str(tmp_path)).resume_step == 2
    err = refused(BASE + ["checkpoint.resume=latest", override], tmp_path)
    assert err.key == "checkpoint.resume" and "step_2 was saved with other settings" in err.rule
    assert f"({key}: {change})" in err.rule, err.rule  # this key, and no other
    assert "checkpoint.resume_allow_changes=true" in err.fix
    assert (
        validate(
            compose(BASE + ["checkpoint.resume=latest", override, "checkpoint.resume_allow_changes=true"]),
            run_dir=str(tmp_path),
        ).resume_step
        == 2
    )


def test_resume_refuses_a_changed_mesh_as_built(tmp_path):
    """Ring attention over 2 ranks (sp 1, cp 2), resumed as 2 data-parallel ranks (cp 1, dp_shard 2): twice the
    tokens per step. The mesh is recorded as built (cp_size, and dp_shard_size from the world, not world / (replicate x
    sp))."""
    ring = BASE + ["parallelism.sp_size=1", "parallelism.cp_size=2", "data.seq_length=128"]
    make_checkpoint(str(tmp_path), 2, ring)
    assert validate(compose(ring + ["checkpoint.resume=latest"]), run_dir=str(tmp_path)).resume_step == 2
    err = refused(ring + ["checkpoint.resume=latest", "parallelism.cp_size=1", "parallelism.dp_shard_size=2"], tmp_path)
    assert "(parallelism.cp_size: 2 -> 1; parallelism.dp_shard_size: 1 -> 2)" in err.rule, err.rule


HF = ["data=hf", "data.path=/corpus.jsonl", "data.packing=true"]
HF_CHANGES = [
    ("data.add_eos=false", "data.add_eos: True -> False"),
    ("data.chat_template=tpl", "data.chat_template: None -> 'tpl'"),
    ("data.shuffle_buffer=10", "data.shuffle_buffer: 10000 -> 10"),
    ("data.streaming=true", "data.streaming: False -> True"),
    ("data.text_field=body", "data.text_field: 'text' -> 'body'"),
    ("data.split=other", "data.split: 'train' -> 'other'"),
    ("data.truncation=false", "data.truncation: True -> False"),
    ("data.pad_to_seq_length=true", "data.pad_to_seq_length: False -> True"),
    ("data.path=/other.jsonl", "data.path: '/corpus.jsonl' -> '/other.jsonl'"),
    ("data.tokenizer=/tok", "data.tokenizer: None -> '/tok'"),
]


@pytest.mark.parametrize("override,change", HF_CHANGES, ids=[c[0].split("=")[0] for c in HF_CHANGES])
def test_resume_refuses_a_changed_data_key_of_an_hf_corpus(override, change, tmp_path):
    """data=hf: every key that changes the token stream is recorded and a change is refused by name (the corpus itself
    is not needed: check_resume compares the settings)."""
    from framework.checkpoint.rules import check_resume

    step_dir = os.path.join(tmp_path, "checkpoints", "step_2")
    os.makedirs(step_dir)
    write_manifest(step_dir, 2, settings_of(HF))
    c = compose(HF + ["checkpoint.resume=latest"]).checkpoint
    assert check_resume(c, run_dir=str(tmp_path), settings=settings_of(HF)) == (
        os.path.join(tmp_path, "checkpoints", "step_2"),
        2,
        [],
    )
    with pytest.raises(ConfigError) as info:
        check_resume(c, run_dir=str(tmp_path), settings=settings_of(HF + [override]))
    assert f"({change})" in info.value.rule, info.value.rule


def test_every_data_key_is_recorded_unless_it_leaves_the_tokens_alone():
    """A data key added later is recorded (refused on resume) unless it is listed as not changing the token stream."""
    from dataclasses import fields

    from framework.checkpoint.store import DATA_NOT_IN_TOKENS
    from framework.data.config import DataConfig

    recorded = set(settings_of(HF)) | set(settings_of([]))
    for f in fields(DataConfig):
        if not f.name.startswith("_"):
            assert (f"data.{f.name}" in recorded) != (f.name in DATA_NOT_IN_TOKENS), f.name


def test_a_resumed_run_cuts_metrics_and_newer_checkpoints_back_to_its_step(tmp_path):
    run = str(tmp_path)
    for step in (1, 2, 3):
        make_checkpoint(run, step)
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)] + ['{"step": 4, "lo']  # cut short by a kill
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    (tmp_path / "result.json").write_text('{"status": "ok"}')
    (tmp_path / ".failed.rank1").write_text('{"rank": 1, "status": "failed", "error": "KeyboardInterrupt"}')
    done = prepare(run, 2)
    assert not (tmp_path / ".failed.rank1").exists()  # a killed launcher's workers left it: not this job's failure
    assert (tmp_path / "metrics.jsonl").read_text() == "\n".join(lines[:2]) + "\n"
    assert not (tmp_path / "result.json").exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step_1", "step_2"]
    assert len(done) == 2 and "dropped 2 lines" in done[0] and "step_3" in done[1]


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_ones(tmp_path):
    import subprocess
    import sys

    first = RunLock(str(tmp_path)).acquire()
    with pytest.raises(ConfigError) as info:
        RunLock(str(tmp_path)).acquire()
    assert info.value.key == "hydra.run.dir" and f"pid {os.getpid()}" in info.value.rule
    first.release()
    assert not (tmp_path / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (tmp_path / ".lock").write_text(f"{socket.gethostname()} {dead.pid}")
    lock = RunLock(str(tmp_path)).acquire()
    assert (tmp_path / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}"
    lock.release()


def contend(run_dir, start, done, won):
    """One of two processes released together: try the lock; hold it until both have tried."""
    from framework.errors import ConfigError

    start.wait()
    try:
        lock = RunLock(run_dir).acquire()
        won.put(os.getpid())
    except ConfigError:
        lock = None
    done.wait()
    if lock:
        lock.release()


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_run_lock_is_held_by_one_of_two_jobs_started_together(stale, tmp_path):
    """Two processes released at the same moment, 60 times, into a fresh directory or one a dead job's lock file is
    in: exactly one holds the lock each time (the check-then-act lock let both in 1/300 and 4/300 times)."""
    import multiprocessing
    import socket

    ctx = multiprocessing.get_context("fork")
    for trial in range(60):
        run_dir = tmp_path / str(trial)
        run_dir.mkdir()
        if stale:
            (run_dir / ".lock").write_text(f"{socket.gethostname()} 999999999")  # no such pid
        start, done, won = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=contend, args=(str(run_dir), start, done, won)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        winners = []
        while not won.empty():
            winners.append(won.get())
        assert len(winners) == 1, (trial, winners)
        assert not (run_dir / ".lock").exists()


def test_default_run_directory_is_unique_per_launch():
    """Two launches in the same second used to share outputs/<date>/<time>: the default now ends with the pid."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import OmegaConf

    from framework.config import register
    from helpers import CONF_DIR

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(config_name="config", return_hydra_config=True)
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    assert run_dir.startswith("outputs/") and run_dir.endswith(f"-{os.getpid()}"), run_dir
