"""The run directory: one job at a time (a lock file), and what a run finds there when it starts (a resumed run cuts
metrics.jsonl and checkpoints back to its checkpoint's step; nobody inherits an earlier result.json)."""

import json
import os
import socket
from typing import List

from framework.checkpoint import remove_newer
from framework.files import atomic_write

LOCK = ".lock"


class RunLock:
    """`<run_dir>/.lock`, held with flock(2) for the job's life and holding `host pid` (for the message). The kernel
    drops the lock when its process dies, so a lock left by a dead job is free without anyone judging it stale, and
    taking it is one atomic call: two jobs started together never both hold it. A held one refuses the second job
    with a ConfigError."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK)
        self.mine = f"{socket.gethostname()} {os.getpid()}"
        self.held, self.fd = False, None

    def acquire(self):
        import fcntl

        from framework.errors import ConfigError

        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner = self.owner()
                who = f"pid {owner[1]} on {owner[0]}" if owner else "its owner is still starting"
                raise ConfigError(
                    "hydra.run.dir",
                    os.path.dirname(self.path),
                    f"another job ({who}) is running in this directory",
                    "wait for it to end, or give this job its own directory (hydra.run.dir=...)",
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner released it (removed the file) between our open and our flock: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, self.mine.encode())
            self.fd, self.held = fd, True
            return self
        raise ConfigError(
            "hydra.run.dir",
            os.path.dirname(self.path),
            "its lock file keeps changing hands",
            "give this job its own directory (hydra.run.dir=...)",
        )

    def owner(self):
        try:
            host, pid = open(self.path).read().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None  # empty: its owner took it a moment ago and has not written its name yet

    def release(self):
        if self.held:
            try:
                os.remove(self.path)  # still holding it: a job that opened the file before this finds it unlinked
            except FileNotFoundError:
                pass
            os.close(self.fd)
        self.held, self.fd = False, None


def holds_run(run_dir: str) -> bool:
    """Whether an earlier run trained here (its metrics or checkpoints are here)."""
    return any(os.path.exists(os.path.join(run_dir, n)) for n in ("metrics.jsonl", "checkpoints"))


def prepare(run_dir: str, resume_step: int, skipped=()) -> List[str]:
    """Before the workers start: remove an earlier result.json, and for a run resumed at `resume_step` drop the
    metrics.jsonl lines and this directory's checkpoints after it (they belong to the branch being replaced: the run
    writes them again). Returns what resume skipped and what this did, one line each."""
    done = [f"skipped checkpoint {line}" for line in skipped]
    for name in ["result.json"] + [n for n in os.listdir(run_dir) if n.startswith(".failed.rank")]:
        try:  # .failed.rank<N>: left by workers whose launcher was killed; this job's launcher would read them
            os.remove(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        lines = open(path).read().splitlines()
        kept = [line for line in lines if step_of(line) is not None and step_of(line) <= resume_step]
        if len(kept) != len(lines):
            with atomic_write(path) as f:
                f.write("".join(line + "\n" for line in kept))
            done.append(f"metrics.jsonl: kept steps 1-{resume_step}, dropped {len(lines) - len(kept)} lines after")
    for name in remove_newer(os.path.join(run_dir, "checkpoints"), resume_step):
        done.append(f"deleted checkpoint {name}, newer than the one resumed (the run writes it again)")
    return done


def finished(run_dir: str, resume_step: int, max_steps: int):
    """The result record of a run that already ended well at the step it would resume from (nothing to do), else
    None."""
    path = os.path.join(run_dir, "result.json")
    if not resume_step or resume_step < max_steps or not os.path.exists(path):
        return None
    try:
        rec = json.load(open(path))
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") == "ok" and rec.get("steps") == resume_step else None


def last_metrics(run_dir: str):
    """The last whole line of <run_dir>/metrics.jsonl (a line cut short by a kill is not a step), or None."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    lines = [line for line in open(path).read().splitlines() if step_of(line) is not None]
    return json.loads(lines[-1]) if lines else None


def step_of(line: str):
    """The step of one metrics.jsonl line; None for a line cut short (a job killed while writing it)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
