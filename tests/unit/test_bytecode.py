"""framework.bytecode: with PYTHONDONTWRITEBYTECODE set and packages shipping no bytecode, the command keeps what it
compiles in a folder of its own, for itself and the processes it starts (which multiprocessing runs with -B).

Each test runs fresh interpreters over a small package written to tmp_path (no bytecode beside it)."""

import os
import subprocess
import sys

import pytest
from helpers import python_words

from framework.env import PYCACHE_ENV


@pytest.fixture
def pkg(tmp_path):
    src = tmp_path / "src" / "lonely"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("VALUE = 41 + 1\n")
    return tmp_path


def run(code: str, pkg, flags=(), **env_extra):
    """`code` in a fresh interpreter with PYTHONDONTWRITEBYTECODE set, the package on its path, from its folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX", PYCACHE_ENV)}
    env.update(PYTHONDONTWRITEBYTECODE="1", **env_extra)
    return python_words(code, pkg / "src", flags=flags, env=env, cwd=pkg, timeout=120)


def compiled(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs if ".pyc" in f)


CACHE_THEN_IMPORT = (
    "from framework.bytecode import cache_bytecode, ships_no_bytecode\n"
    "print(ships_no_bytecode('lonely'), cache_bytecode())\n"
    "import lonely, os\n"
    "print(lonely.VALUE, os.environ.get('PYTHONDONTWRITEBYTECODE'), os.environ.get('PYTHONPYCACHEPREFIX'))\n"
)


def test_the_command_keeps_what_it_compiles_in_its_folder_and_says_so_once(pkg):
    folder = str(pkg / "pycache")
    assert run(CACHE_THEN_IMPORT, pkg, **{PYCACHE_ENV: folder}) == ["True", folder, "42", "None", folder]
    kept = compiled(folder)
    assert [p for p in kept if "lonely" in p] and not compiled(pkg / "src"), kept  # the sources' folder untouched
    # the next command finds the folder: nothing to say, the bytecode is read from there
    assert run(CACHE_THEN_IMPORT, pkg, **{PYCACHE_ENV: folder})[:2] == ["True", "None"]


def test_without_it_nothing_is_kept_and_zero_turns_it_off(pkg):
    """The control: the variable alone keeps nothing anywhere; FRAMEWORK_PYCACHE=0 leaves it so."""
    assert run("import lonely; print(lonely.VALUE)", pkg) == ["42"]
    assert run(CACHE_THEN_IMPORT, pkg, **{PYCACHE_ENV: "0"}) == ["True", "None", "42", "1", "None"]
    assert compiled(pkg) == []


def test_a_prefix_the_user_chose_is_left_alone(pkg):
    words = run(CACHE_THEN_IMPORT, pkg, PYTHONPYCACHEPREFIX=str(pkg / "theirs"), **{PYCACHE_ENV: str(pkg / "ours")})
    assert words == ["True", "None", "42", "1", str(pkg / "theirs")]
    assert compiled(pkg) == []  # the variable still forbids writing, as they asked


def test_by_default_only_where_the_installer_compiled_nothing(pkg, tmp_path):
    """Without FRAMEWORK_PYCACHE the folder is ~/.cache/framework/pycache, used only where the probed package (torch
    for the CLI) has no bytecode beside its source; once compiled there (pip does), nothing changes."""
    code = CACHE_THEN_IMPORT.replace("cache_bytecode()", "cache_bytecode(probe='lonely')")
    home = tmp_path / "home"
    folder = str(home / ".cache" / "framework" / "pycache")
    assert run(code, pkg, HOME=str(home)) == ["True", folder, "42", "None", folder]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(pkg / "src")], check=True)  # as pip installs
    home = tmp_path / "home2"
    assert run(code, pkg, HOME=str(home)) == ["False", "None", "42", "1", "None"] and not home.exists()


def test_a_process_the_command_started_with_dash_B_writes_there_too(pkg):
    folder = str(pkg / "pycache")
    code = "from framework.bytecode import follow\nfollow()\nimport lonely\nprint(lonely.VALUE)\n"
    env = {PYCACHE_ENV: folder, "PYTHONPYCACHEPREFIX": folder}
    assert run(code, pkg, flags=("-B",), **env) == ["42"]
    assert [p for p in compiled(folder) if "lonely" in p]
    # the control: the same child without follow() writes nothing
    other = str(pkg / "other")
    assert run(
        "import lonely\nprint(lonely.VALUE)\n", pkg, flags=("-B",), **{PYCACHE_ENV: other, "PYTHONPYCACHEPREFIX": other}
    ) == ["42"]
    assert compiled(other) == []
