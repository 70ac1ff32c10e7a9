"""Files written whole or not at all (a leaf: it imports nothing else of the project).

A reader (resume, the sweep summary, a user's script, a crash) sees the old file or the complete new one, never a
part: the text goes to a temporary file beside the target, which then replaces it by a rename (atomic within one
filesystem). Directories (the exported model) are published the same way by framework.export."""

import contextlib
import json
import os
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, fsync: bool = False, **open_kw):
    """`with atomic_write(path) as f: f.write(...)`: `path` is replaced when the block ends without an error, and
    left as it was (the temporary file removed) when it raises. fsync: flush the data to disk before the rename
    (a checkpoint's manifest must not name files a crash could lose); the caller fsyncs the folder if it must."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any, *, indent: int = 2, fsync: bool = False):
    """`obj` as JSON in `path`, whole or not at all."""
    with atomic_write(path, fsync=fsync) as f:
        json.dump(obj, f, indent=indent)
