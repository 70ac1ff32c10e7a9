"""One logger for the project: `log = get_logger(__name__)`, then `log.info(...)` where a print was.

Rank 0 says INFO and up; the other ranks only WARNING and up (rank 0 already says what they would). Lines are the
plain message, on the streams a print used: INFO to stdout, WARNING and up to stderr. A job's console, the workers'
lines included, is copied to `<run dir>/train.log` (framework.tee): that file is the job's log. The "framework"
logger does not propagate: Hydra's console handler on the root logger would print each line twice.
A leaf module: it imports nothing else of the project."""

import logging
import os
import sys

ROOT = "framework"


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


def rank_zero_or_warning(record: logging.LogRecord) -> bool:
    """Rank 0 logs everything; another rank WARNING and up. The rank is read at each line (under srun the CLI sets
    RANK after the modules, and their loggers, were imported)."""
    return record.levelno >= logging.WARNING or int(os.environ.get("RANK", "0")) == 0


def root() -> logging.Logger:
    """The "framework" logger, set up on first use: its console handler."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, Console) for h in logger.handlers):
        logger.setLevel(logging.INFO)
        logger.propagate = False
        console = Console()
        console.addFilter(rank_zero_or_warning)  # on each handler: a logger's own filters skip its children's lines
        logger.addHandler(console)
    return logger


def get_logger(name: str) -> logging.Logger:
    """The logger of a module of the project (`__name__`, under "framework"); any other name is put under it."""
    root()
    return logging.getLogger(name if name == ROOT or name.startswith(ROOT + ".") else f"{ROOT}.{name}")
