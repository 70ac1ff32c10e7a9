"""The same command as one rank of a job that torchrun started (multi-node / SLURM path): rank 0 composes with Hydra
and owns the only run directory, the other ranks compose the same config and learn the directory from rank 0; the
run trains exactly as under our own launcher."""

import glob
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, clean_env, run_job

pytestmark = pytest.mark.slow


def test_torchrun_started_ranks_write_one_run_directory_and_train_the_same(tmp_path, tiny_llama_dir):
    overrides = [f"model.name_or_path={tiny_llama_dir}", "train.max_steps=2", "data.seq_length=128"]
    from framework.launch import free_port

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "framework",
        "+experiment=smoke_cpu",
        *overrides,
    ]
    p = subprocess.run(cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    run_dirs = [os.path.dirname(f) for f in glob.glob(str(tmp_path / "outputs" / "*" / "*" / "config.yaml"))]
    assert len(run_dirs) == 1 and len(glob.glob(str(tmp_path / "outputs" / "*" / "*"))) == 1, run_dirs
    result = json.load(open(os.path.join(run_dirs[0], "result.json")))
    metrics = [json.loads(x) for x in open(os.path.join(run_dirs[0], "metrics.jsonl"))]
    assert result["status"] == "ok" and len(metrics) == 2
    ours = run_job(overrides, str(tmp_path / "own_launcher"))
    assert [m["loss"] for m in metrics] == [m["loss"] for m in ours.metrics]


def test_torchrun_followers_take_rank_0s_config(tmp_path):
    """--config-dir adds a model config only rank 0's Hydra reads (the other ranks compose without it, and used to
    fail on the directory left among the overrides): every rank trains rank 0's config."""
    from helpers import REPO
    from framework.launch import free_port

    conf = os.path.join(REPO, "tests", "e2e", "conf")
    run_dir = tmp_path / "job"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "framework",
        "--config-dir",
        conf,
        "+experiment=smoke_cpu",
        "model=tiny_gpt_bigcode",
        "parallelism.sp_size=1",
        "attention.document_masking=false",
        "parallelism.dp_shard_size=2",
        "train.max_steps=2",
        "data.seq_length=64",
        f"hydra.run.dir={run_dir}",
    ]
    p = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    result = json.load(open(run_dir / "result.json"))
    assert result["status"] == "ok" and result["steps"] == 2, result
    assert "gpt_bigcode" in (run_dir / "config.yaml").read_text()


def test_two_torchrun_agents_on_loopback_train_like_one_node(tmp_path, tiny_llama_dir):
    """Multi-node, end to end: two torchrun agents (two "nodes" of one process each, c10d rendezvous on 127.0.0.1)
    run the same command, the ring (cp_size=2) going across them; the losses are those of the same job on one node
    under our own launcher."""
    from framework.launch import free_port

    overrides = [
        f"model.name_or_path={tiny_llama_dir}",
        "train.max_steps=2",
        "data.seq_length=128",
        "parallelism.sp_size=1",
        "parallelism.cp_size=2",
    ]
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "two_agents",
        "-m",
        "framework",
        "+experiment=smoke_cpu",
        *overrides,
        f"hydra.run.dir={tmp_path / 'two_nodes'}",
    ]
    env = clean_env(PYTHONPATH=REPO)  # this checkout's framework, whichever one the environment installed
    agents = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [a.communicate(timeout=240) for a in agents]
    assert [a.returncode for a in agents] == [0, 0], "\n".join(o[1][-2000:] for o in outs)
    metrics = [json.loads(x) for x in open(tmp_path / "two_nodes" / "metrics.jsonl")]
    ours = run_job(overrides, str(tmp_path / "one_node"))
    assert len(metrics) == 2 and [m["loss"] for m in metrics] == [m["loss"] for m in ours.metrics]
