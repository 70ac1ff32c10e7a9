"""DeepSpeed's JIT-built ops (on CPU: the shared-memory collectives op, `deepspeed_shm_comm`), made safe to wait for.

torch builds such an op under TORCH_EXTENSIONS_DIR behind a lock file that it waits on forever; a job killed while
holding it (SIGKILL, or `timeout` during the first build) left every later run waiting in silence, and two
environments sharing ~/.cache/torch_extensions rebuilt the op over each other. Here, before any worker starts: each
Python environment gets its own extensions folder (unless the user set TORCH_EXTENSIONS_DIR), a lock nobody is building
behind is removed, every wait is bounded and says what it waits for, and a first build says it is coming."""

import hashlib
import os
import sys
import time

from framework.errors import ConfigError

OP = "deepspeed_shm_comm"
GRACE_S = 60.0
"""A lock is stale when nothing in its build folder changed for this long and no process works in that folder (the
compiler and ninja run with it as their working directory)."""


def extensions_dir() -> str:
    """TORCH_EXTENSIONS_DIR, set (for this process and the workers it starts) to a folder of this Python environment
    unless the user set one: ~/.cache/framework/torch_extensions/<hash of sys.prefix>."""
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        env = hashlib.sha1(os.path.realpath(sys.prefix).encode()).hexdigest()[:10]
        os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(
            os.path.expanduser("~"), ".cache", "framework", "torch_extensions", env
        )
    return os.environ["TORCH_EXTENSIONS_DIR"]


def build_dir(name: str = OP) -> str:
    """Where torch builds op `name`: <TORCH_EXTENSIONS_DIR>/<name> (torch.utils.cpp_extension adds a
    py<major><minor>_<cpu|cuXY> folder only under its default root, which extensions_dir() never leaves in place)."""
    return os.path.join(extensions_dir(), name)


def busy(folder: str) -> bool:
    """Whether a process works in `folder` (its working directory is there: a build's compiler or ninja)."""
    import psutil

    real = os.path.realpath(folder)
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if cwd and (cwd == real or cwd.startswith(real + os.sep)):
            return True
    return False


def stale(folder: str, grace_s: float = GRACE_S) -> bool:
    """Whether the build lock in `folder` is left over: nothing there changed for grace_s and nobody works there."""
    newest = 0.0
    for entry in os.scandir(folder):
        try:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        except FileNotFoundError:
            pass
    return time.time() - newest > grace_s and not busy(folder)


def wait_for_build_lock(folder: str, *, timeout_s: float, grace_s: float = GRACE_S, say=print, poll_s: float = 0.5):
    """Return once `folder`/lock is gone: released by the build that holds it, or removed when stale. Says what it
    waits for; past timeout_s, a ConfigError naming the lock."""
    lock = os.path.join(folder, "lock")
    start, said = time.monotonic(), False
    while os.path.exists(lock):
        if stale(folder, grace_s):
            os.remove(lock)
            say(
                f"removed {lock}: a build killed before it finished left it (nothing had changed there for "
                f"{grace_s:.0f} s and no process was building)"
            )
            return
        waited = time.monotonic() - start
        if waited > timeout_s:
            raise ConfigError(
                "TORCH_EXTENSIONS_DIR",
                os.path.dirname(os.path.dirname(folder)),
                f"the build lock {lock} has been held for {waited:.0f} s (another job is building "
                "DeepSpeed's shared-memory op, or a build that is stuck)",
                f"wait for that build to end, or delete {lock} if none is running",
            )
        if not said:
            say(
                f"waiting for {lock}: another process is building DeepSpeed's shared-memory op (at most "
                f"{timeout_s:.0f} s; a lock nobody builds behind is removed after {grace_s:.0f} s)"
            )
            said = True
        time.sleep(poll_s)


def prepare_cpu_op(*, timeout_s: float, say=print):
    """Before the workers start on CPU: the per-environment extensions folder, no stale lock in the way, and a word
    when the op is about to be compiled (the first run in an environment spends about 45 s on it)."""
    import torch

    if torch.cuda.is_available():  # DeepSpeed's accelerator is then CUDA: it builds no shared-memory op
        return
    folder = build_dir()
    if os.path.isdir(folder):
        wait_for_build_lock(folder, timeout_s=timeout_s, say=say)
    if not os.path.exists(os.path.join(folder, f"{OP}.so")):
        say(f"building DeepSpeed's shared-memory op for CPU collectives in {folder} (once per environment, about 45 s)")
