"""Resume restores the data position and the optimizer/scheduler state: a run saved every step to step 4 and runs
resumed from its step-2 and step-3 checkpoints to step 4 report the same steps 3-4 (loss, grad norm, lr).

The resumed run starts from the checkpoint of the uninterrupted run, which is exactly what a run killed after step 2
leaves behind (same config, same max_steps and so the same LR schedule). sp_size=2 with the seeded shuffle on, so
the data position matters: steps 3-4 read rows other than steps 1-2.
"""

import os

import pytest

from helpers import assert_ok, run_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full(tmp_path_factory, tiny_llama_dir):
    d = tmp_path_factory.mktemp("resume")
    run = assert_ok(run_job(base(tiny_llama_dir), str(d / "full")), steps=4)
    assert {f"step_{i}" for i in range(1, 5)} <= set(os.listdir(d / "full" / "checkpoints"))
    assert len({round(x, 6) for x in run.losses}) == 4  # every step differs: equal numbers below are no constant
    return run


def base(model_dir):
    return [
        f"model.name_or_path={model_dir}",
        "train.max_steps=4",
        "checkpoint.every=1",
        "data.seq_length=128",
        "parallelism.sp_size=2",
    ]


@pytest.mark.parametrize("stop", [2, 3])
def test_resumed_run_continues_exactly(stop, full, tmp_path, tiny_llama_dir):
    """stop=2: the brief's case; stop=3: resuming inside an SP round (the 2 SP ranks load batches in turns)."""
    ckpt = os.path.join(full.run_dir, "checkpoints", f"step_{stop}")
    resumed = assert_ok(
        run_job(
            base(tiny_llama_dir) + [f"checkpoint.resume={ckpt}", "checkpoint.trust_resume=true"],
            str(tmp_path / "resumed"),
        ),
        steps=4 - stop,
    )
    assert [m["step"] for m in resumed.metrics] == list(range(stop + 1, 5))
    for a, b in zip(resumed.metrics, full.metrics[stop:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6), (resumed.losses, full.losses)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert resumed.result["steps"] == 4 and resumed.result["final_loss"] == pytest.approx(full.losses[-1], rel=1e-6)
    assert "resumed from" in resumed.stdout + resumed.stderr


def test_resume_latest_skips_a_checkpoint_cut_short_and_one_whose_folder_vanished(full, tmp_path, tiny_llama_dir):
    """A copy of the uninterrupted run's directory where step_4's folder vanished after DeepSpeed's `latest` named it
    and bytes inside step_3's optimizer states changed (its size kept, as a disk error leaves it): resume=latest skips
    both, saying why, resumes from step_2 and ends with the uninterrupted run's losses. With checkpoint.keep_last=2 only
    the two newest (rewritten, complete) checkpoints stay."""
    import shutil

    from framework.checkpoint import incomplete_reason

    run_dir = tmp_path / "run"
    shutil.copytree(full.run_dir, run_dir)
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_4"
    shutil.rmtree(ckpts / "step_4")
    torn = max((ckpts / "step_3").rglob("*optim_states.pt"), key=lambda p: p.stat().st_size)
    with open(torn, "r+b") as f:  # bytes changed, the size kept: only the checksum tells
        f.seek(torn.stat().st_size // 2)
        byte = f.read(1)
        f.seek(torn.stat().st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.remove(run_dir / "result.json")  # as a crash leaves it
    resumed = assert_ok(
        run_job(base(tiny_llama_dir) + ["checkpoint.resume=latest", "checkpoint.keep_last=2"], str(run_dir)), steps=4
    )  # steps 1-2 kept, 3-4 cut and written again
    out = resumed.stdout + resumed.stderr
    assert "skipped checkpoint step_4: its folder is gone" in out, out
    assert f"skipped checkpoint step_3: {torn.relative_to(ckpts / 'step_3')} does not match its checksum" in out, out
    assert "at step 2" in out
    assert [m["step"] for m in resumed.metrics] == [1, 2, 3, 4]
    for a, b in zip(resumed.metrics, full.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6), (resumed.losses, full.losses)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["step_3", "step_4"]
    assert incomplete_reason(str(ckpts / "step_3")) is None and incomplete_reason(str(ckpts / "step_4")) is None
    assert not (run_dir / ".lock").exists()


def test_resuming_a_finished_run_does_nothing_and_keeps_its_record(full, tmp_path, tiny_llama_dir):
    """resume=latest at train.max_steps: nothing to do, rc 0; result.json, metrics.jsonl and model/ stay as they were
    (the record used to become steps 0, final_loss null)."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(full.run_dir, run_dir)
    before = {n: (run_dir / n).read_bytes() for n in ("result.json", "metrics.jsonl", "model/config.json")}
    again = run_job(base(tiny_llama_dir) + ["checkpoint.resume=latest"], str(run_dir))
    assert again.returncode == 0, again.describe()
    assert "nothing to do" in again.stdout and "train.max_steps=4" in again.stdout, again.stdout
    assert {n: (run_dir / n).read_bytes() for n in before} == before
    assert not (run_dir / ".lock").exists()


def test_resumed_ring_run_continues_exactly(tmp_path, tiny_llama_dir):
    """Ring attention (cp_size=2, no Ulysses): the 2 ring ranks share each sequence and load batches in turns like SP
    ranks; resumed at step 3 (inside such a round), steps 3-4 are the uninterrupted run's."""
    ring = base(tiny_llama_dir) + ["parallelism.sp_size=1", "parallelism.cp_size=2"]
    full = assert_ok(run_job(ring, str(tmp_path / "full")), steps=4)
    ckpt = os.path.join(full.run_dir, "checkpoints", "step_3")
    resumed = assert_ok(
        run_job(ring + [f"checkpoint.resume={ckpt}", "checkpoint.trust_resume=true"], str(tmp_path / "resumed")),
        steps=1,
    )
    assert resumed.metrics[0]["step"] == 4
    assert resumed.metrics[0]["loss"] == pytest.approx(full.metrics[3]["loss"], rel=1e-6), (resumed.losses, full.losses)
    assert resumed.metrics[0]["grad_norm"] == pytest.approx(full.metrics[3]["grad_norm"], rel=1e-5)
    assert full.losses[3] != pytest.approx(full.losses[2], rel=1e-4)  # step 4 is not step 3 again
