"""DeepSpeed's JIT-built CPU op behind torch's build lock (framework.engine.jit): a lock left by a killed build is
removed, a live build is waited for, and every wait is bounded and said."""

import os
import subprocess
import sys
import threading
import time

import pytest

from framework.engine.jit import extensions_dir, wait_for_build_lock
from framework.errors import ConfigError


def build_folder(tmp_path, age_s):
    folder = tmp_path / "py311_cpu" / "deepspeed_shm_comm"
    folder.mkdir(parents=True)
    (folder / "build.ninja").write_text("")
    (folder / "lock").write_text("")
    old = time.time() - age_s
    for name in ("build.ninja", "lock"):
        os.utime(folder / name, (old, old))
    return folder


def test_a_lock_left_by_a_killed_build_is_removed_saying_so(tmp_path):
    folder = build_folder(tmp_path, age_s=600)
    said = []
    start = time.monotonic()
    wait_for_build_lock(str(folder), timeout_s=30, grace_s=60, say=said.append)
    assert time.monotonic() - start < 5 and not (folder / "lock").exists()
    assert len(said) == 1 and "removed" in said[0] and "killed" in said[0]


def test_a_live_build_is_waited_for_and_the_wait_is_bounded(tmp_path):
    folder = build_folder(tmp_path, age_s=600)
    builder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=str(folder))
    try:
        said = []
        with pytest.raises(ConfigError) as info:  # a process works in the folder: not stale; bounded anyway
            wait_for_build_lock(str(folder), timeout_s=1, grace_s=60, say=said.append, poll_s=0.1)
        assert info.value.key == "TORCH_EXTENSIONS_DIR" and "has been held for" in info.value.rule
        assert f"delete {folder / 'lock'}" in info.value.fix
        assert len(said) == 1 and said[0].startswith(f"waiting for {folder / 'lock'}")
        threading.Timer(0.5, os.remove, [str(folder / "lock")]).start()  # the build ends: its lock goes
        wait_for_build_lock(str(folder), timeout_s=30, grace_s=60, say=said.append, poll_s=0.1)
    finally:
        builder.kill()


def test_each_environment_builds_in_a_folder_of_its_own(monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    mine = extensions_dir()
    assert mine.startswith(os.path.expanduser("~/.cache/framework/torch_extensions/"))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/somewhere/else")  # the user's choice wins
    assert extensions_dir() == "/somewhere/else"


def test_the_lock_is_looked_for_where_torch_builds_the_op(tmp_path, monkeypatch):
    """build_dir() is the folder torch's cpp_extension builds in (and locks) under our TORCH_EXTENSIONS_DIR: a wrong
    guess (torch 2.13 dropped the py<major><minor>_cpu folder there) checked a lock nobody took, and rebuilt the op."""
    from torch.utils.cpp_extension import _get_build_directory

    from framework.engine.jit import OP, build_dir

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert build_dir() == _get_build_directory(OP, verbose=False)
