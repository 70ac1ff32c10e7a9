"""Compiled bytecode kept between commands where the environment says not to write it and the packages ship none.

Container images often set PYTHONDONTWRITEBYTECODE=1, and installers such as uv leave packages without
`__pycache__`: every Python process then compiles each module it imports from source, every time. The H100 machines
of experiments/startup/ are such a case (torch there has no bytecode): one process importing the workers' stack took
12.2-15.7 s there, 6.1 s with the bytecode kept. Where the variable is set (or Python runs with -B), torch has no
bytecode beside its sources, and the user chose no PYTHONPYCACHEPREFIX, the command keeps bytecode in a folder of its
own (Python's PYTHONPYCACHEPREFIX mechanism: the sources' folders stay untouched), for itself and every process it
starts. FRAMEWORK_PYCACHE=<dir> picks the folder (and keeps bytecode there whatever torch ships); FRAMEWORK_PYCACHE=0
keeps Python's behaviour."""

import os
import sys
from typing import Optional

from framework.env import PYCACHE_ENV

DEFAULT = os.path.join("~", ".cache", "framework", "pycache")


def ships_no_bytecode(package: str = "torch") -> bool:
    """Whether `package` (found, not imported) has no compiled bytecode beside its source."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not (spec.origin or "").endswith(".py"):
        return False
    return not os.path.exists(importlib.util.cache_from_source(spec.origin))


def cache_bytecode(probe: str = "torch") -> Optional[str]:
    """Called first thing by the CLI. Returns the folder the command keeps bytecode in when it is new (the CLI says so
    once), None otherwise (nothing to do, the user chose, or the folder cannot be made). `probe`: the package whose
    missing bytecode says the installer compiled nothing."""
    setting = os.environ.get(PYCACHE_ENV, "")
    if setting == "0" or not sys.dont_write_bytecode or sys.pycache_prefix:
        return None
    if not setting and not ships_no_bytecode(probe):
        return None
    folder = os.path.abspath(os.path.expanduser(setting or DEFAULT))
    new = not os.path.isdir(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.environ[PYCACHE_ENV] = folder
    sys.pycache_prefix, sys.dont_write_bytecode = folder, False
    return folder if new else None


def follow():
    """In a process the command started: write bytecode into the command's folder too. multiprocessing starts its
    server and spawned workers with `-B` when the command itself started with the variable set."""
    folder = os.environ.get(PYCACHE_ENV, "")
    if folder and folder != "0" and sys.pycache_prefix == folder:
        sys.dont_write_bytecode = False
