"""Under srun, framework.launch.adopt_slurm_env maps SLURM's variables to torch's: every task of a faked 2-node job
gets its rank, the world size, its local rank, the first host of the node list as the master and the same port,
derived from the job id; torchrun's variables, or a MASTER_ADDR the user set, are left alone."""

import os

import pytest

from framework.launch import adopt_slurm_env, first_host

SLURM = {"SLURM_NTASKS": "16", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}
TORCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.mark.parametrize(
    "nodelist,host",
    [
        ("gpu[07-08]", "gpu07"),
        ("gpu[12,3-4],cpu1", "gpu12"),
        ("node3,node1", "node3"),
        ("rack[1-2]-n[01-04]", "rack1-n01"),
        ("single", "single"),
    ],
)
def test_first_host_of_a_compressed_node_list(nodelist, host):
    assert first_host(nodelist) == host


def fake_task(monkeypatch, procid: int, localid: int, **extra):
    for k in TORCH:  # set, then removed: monkeypatch then also undoes what adopt_slurm_env writes
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    for k, v in {**SLURM, "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(localid), **extra}.items():
        monkeypatch.setenv(k, v)
    adopt_slurm_env()
    return {k: os.environ.get(k) for k in TORCH}


def test_every_task_of_a_two_node_job_finds_the_same_master(monkeypatch):
    first = fake_task(monkeypatch, 0, 0)
    last = fake_task(monkeypatch, 15, 7)
    assert first == {
        "RANK": "0",
        "WORLD_SIZE": "16",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(15000 + 4242 % 20000),
    }
    assert last == {**first, "RANK": "15", "LOCAL_RANK": "7"}
    other_job = fake_task(monkeypatch, 0, 0, SLURM_JOB_ID="4243")
    assert other_job["MASTER_PORT"] != first["MASTER_PORT"]


def test_torchrun_and_the_user_win(monkeypatch):
    assert fake_task(monkeypatch, 3, 3, MASTER_ADDR="10.0.0.1")["MASTER_ADDR"] == "10.0.0.1"
    monkeypatch.setenv("RANK", "5")  # torchrun already set it: nothing is mapped
    monkeypatch.setenv("SLURM_PROCID", "1")
    adopt_slurm_env()
    assert os.environ["RANK"] == "5"
