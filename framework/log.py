"""One logger for the project: `log = get_logger(__name__)`, then `log.info(...)` where a print was.

Rank 0 says INFO and up; the other ranks only WARNING and up (rank 0 already says what they would). Lines are the
plain message, on the streams a print used: INFO to stdout, WARNING and up to stderr. During a Hydra job, and in the
workers it starts, they also go to the job's log file (Hydra's <run dir>/<job name>.log, beside Hydra's own lines).
The "framework" logger does not propagate: Hydra's console handler on the root logger would print each line twice.
A leaf module: it imports nothing else of the project but the environment names."""

import contextlib
import logging
import os
import sys

from framework.env import LOG_FILE_ENV

ROOT = "framework"
FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format


class Console(logging.Handler):
    """The plain message on stdout (INFO) or stderr (WARNING and up), the streams looked up at each line (pytest's
    capsys and redirect_stdout swap them)."""

    def emit(self, record):
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001  (logging's own convention: a broken stream never stops the run)
            self.handleError(record)


FILE_ONLY = {"console": False}
"""`log.info(line, extra=FILE_ONLY)`: the line goes to the job log only (the console tracker draws its own)."""


def on_console(record: logging.LogRecord) -> bool:
    return getattr(record, "console", True)


def rank_zero_or_warning(record: logging.LogRecord) -> bool:
    """Rank 0 logs everything; another rank WARNING and up. The rank is read at each line (under srun the CLI sets
    RANK after the modules, and their loggers, were imported)."""
    return record.levelno >= logging.WARNING or int(os.environ.get("RANK", "0")) == 0


def root() -> logging.Logger:
    """The "framework" logger, set up on first use: the console handler, and the job's log file when the CLI named
    one for this process's job (a worker inherits it)."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, Console) for h in logger.handlers):
        logger.setLevel(logging.INFO)
        logger.propagate = False
        console = Console()
        console.addFilter(rank_zero_or_warning)  # on each handler: a logger's own filters skip its children's lines
        console.addFilter(on_console)
        logger.addHandler(console)
        if os.environ.get(LOG_FILE_ENV):
            add_file(os.environ[LOG_FILE_ENV])
    return logger


def get_logger(name: str) -> logging.Logger:
    """The logger of a module of the project (`__name__`, under "framework"); any other name is put under it."""
    root()
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")


def add_file(path: str) -> logging.FileHandler:
    handler = logging.FileHandler(path, mode="a")  # several processes append to one file: each line in one write
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.addFilter(rank_zero_or_warning)
    logging.getLogger(ROOT).addHandler(handler)
    return handler


def hydra_log_file():
    """The file Hydra's job logging writes in this process (its root logger's file handler), or None (no Hydra job,
    or hydra/job_logging=disabled)."""
    return next((h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)), None)


@contextlib.contextmanager
def job_log(path):
    """During one job: our lines also go to `path` (None: nowhere), in this process and in the workers it starts."""
    root()
    if not path:
        yield
        return
    handler, before = add_file(path), os.environ.get(LOG_FILE_ENV)
    os.environ[LOG_FILE_ENV] = path  # inherited by the workers
    try:
        yield
    finally:
        logging.getLogger(ROOT).removeHandler(handler)
        handler.close()
        if before is None:
            os.environ.pop(LOG_FILE_ENV, None)
        else:
            os.environ[LOG_FILE_ENV] = before
