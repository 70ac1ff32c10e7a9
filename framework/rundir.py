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
    """`<run_dir>/.lock`, created with O_EXCL, holding `host pid`. A lock left by a process that is gone (on this
    host) is taken over; a live one refuses the second job with a ConfigError."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, LOCK)
        self.mine = f"{socket.gethostname()} {os.getpid()}"
        self.held = False

    def acquire(self):
        from framework.errors import ConfigError

        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner is None or not self.alive(owner):
                    self.remove()  # stale: its job died without releasing it
                    continue
                raise ConfigError("hydra.run.dir", os.path.dirname(self.path), f"another job (pid {owner[1]} on "
                                  f"{owner[0]}) is running in this directory", "wait for it to end, or give this "
                                  "job its own directory (hydra.run.dir=...)") from None
            with os.fdopen(fd, "w") as f:
                f.write(self.mine)
            self.held = True
            return self
        raise ConfigError("hydra.run.dir", os.path.dirname(self.path), "its lock file keeps changing hands",
                          "give this job its own directory (hydra.run.dir=...)")

    def owner(self):
        try:
            host, pid = open(self.path).read().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None  # unreadable or half-written: its writer died between create and write

    @staticmethod
    def alive(owner) -> bool:
        host, pid = owner
        if host != socket.gethostname():
            return True  # cannot tell from here: another node's job on a shared filesystem
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def remove(self):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        if self.held and self.owner() == (socket.gethostname(), os.getpid()):
            self.remove()
        self.held = False


def holds_run(run_dir: str) -> bool:
    """Whether an earlier run trained here (its metrics or checkpoints are here)."""
    return any(os.path.exists(os.path.join(run_dir, n)) for n in ("metrics.jsonl", "checkpoints"))


def prepare(run_dir: str, resume_step: int, skipped=()) -> List[str]:
    """Before the workers start: remove an earlier result.json, and for a run resumed at `resume_step` drop the
    metrics.jsonl lines and this directory's checkpoints after it (they belong to the branch being replaced: the run
    writes them again). Returns what resume skipped and what this did, one line each."""
    done = [f"skipped checkpoint {line}" for line in skipped]
    try:
        os.remove(os.path.join(run_dir, "result.json"))
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


def step_of(line: str):
    """The step of one metrics.jsonl line; None for a line cut short (a job killed while writing it)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
