"""A single-node job listens on loopback only: the launcher's rendezvous store and the workers' store (no
authentication; the launcher unpickles what it reads there) and gloo's sockets. Read from /proc while a 2-process job
runs: /proc/net/tcp and tcp6 give each listening socket's address and inode, /proc/<pid>/fd names the socket inodes of
the job's processes."""

import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time

import psutil
import pytest

from helpers import REPO, clean_env

pytestmark = pytest.mark.slow


def listening_sockets() -> dict:
    """inode -> (address, port) of every TCP socket of this host in state LISTEN."""
    out = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in open(f"/proc/net/{name}").read().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = fields[1].split(":")
            words = [int(addr[i : i + 8], 16) for i in range(0, len(addr), 8)]  # each 32-bit word in host order
            out[int(fields[9])] = (
                socket.inet_ntop(family, b"".join(struct.pack("<I", w) for w in words)),
                int(port, 16),
            )
    return out


def socket_inodes(pid: int) -> set:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass  # the process ended meanwhile
    return inodes


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_single_node_job_listens_on_loopback_only(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "framework",
        "+experiment=smoke_cpu",
        "train.max_steps=30",
        "data.seq_length=64",
        f"hydra.run.dir={tmp_path / 'job'}",
    ]
    job = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = {}  # (pid, address, port) -> process name
    pids = set()
    while job.poll() is None:
        try:
            procs = [psutil.Process(job.pid)] + psutil.Process(job.pid).children(recursive=True)
        except psutil.Error:
            break
        listening = listening_sockets()
        for proc in procs:
            pids.add(proc.pid)
            for inode in socket_inodes(proc.pid) & listening.keys():
                seen[(proc.pid, *listening[inode])] = proc.name()
        time.sleep(0.1)
    assert job.wait(timeout=240) == 0
    assert len(pids) >= 3, pids  # the launcher and its 2 workers were watched
    assert len({pid for pid, _, _ in seen}) >= 3, seen  # the launcher's stores and each worker's gloo sockets
    outside = {k: v for k, v in seen.items() if not is_loopback(k[1])}
    assert not outside, f"listening beyond loopback: {outside}"
