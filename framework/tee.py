"""The console output of a job, kept in its run directory as well (`<run dir>/train.log`).

The command's process points its stdout and stderr (file descriptors 1 and 2) at a pipe for the job's duration; the
workers it starts inherit them, so their step lines, start-up lines, warnings and tracebacks pass through too. A
thread copies what arrives to the terminal and, without the progress bar's redraws, to the file. A warning repeated
word for word (every step, every rank: torch's `all_gather_into_tensor` deprecation, peft's gradient checkpointing
one) is shown once. It imports only framework.env."""

import os
import re
import sys
import threading

from framework.env import TTY_ENV

WARNING = re.compile(r"^(\S+:\d+: \w*Warning: |\[[\d\- :,]+\] \[WARNING\] |\S*[Ww]arning: |WARNING)")
TIMESTAMP = re.compile(r"^\[[\d\- :,.]+\] ")


class Tee:
    """`with Tee(path):` copies fds 1 and 2 to `path` (appended) until the block ends or close() is called."""

    def __init__(self, path: str):
        self.path = path
        self.thread = None

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        self.tty = os.isatty(1)
        self.file = open(self.path, "ab", buffering=0)
        self.seen, self.lock = set(), threading.Lock()
        self.threads = []
        for fd, out in ((1, self.saved[0]), (2, self.saved[1])):  # stdout to stdout, stderr to stderr
            read, write = os.pipe()
            os.dup2(write, fd)
            os.close(write)
            self.threads.append(threading.Thread(target=self.copy, args=(read, out), daemon=True, name=f"tee{fd}"))
        self.env = os.environ.get(TTY_ENV)
        if self.tty:
            os.environ[TTY_ENV] = "1"
        for t in self.threads:
            t.start()
        self.thread = self.threads[0]
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stop copying (idempotent): the terminal gets fds 1 and 2 back, the file is complete."""
        if self.thread is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)  # the pipe's last write end in this process closes here: the thread sees EOF once
        os.dup2(self.saved[1], 2)  # the workers (already gone) have closed theirs
        for t in self.threads:
            t.join(timeout=5)  # a process the job left behind may hold a pipe open: then that copy goes on
        if not any(t.is_alive() for t in self.threads):
            for fd in self.saved:
                os.close(fd)
            self.file.close()
        self.thread = None
        if self.env is None:
            os.environ.pop(TTY_ENV, None)
        else:
            os.environ[TTY_ENV] = self.env

    def copy(self, read: int, out: int):
        skip_source, pending, echoed = False, b"", 0
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    already, echoed = echoed, 0  # bytes of this line the terminal already got (an open line)
                    text = raw.decode("utf-8", "replace")
                    shown = text.rsplit("\r", 1)[-1].replace("\033[K", "")  # the bar's redraws: the last state
                    if skip_source and raw.startswith(b"  "):  # the source line Python prints under a warning
                        continue
                    skip_source = False
                    if WARNING.match(shown):
                        key = TIMESTAMP.sub("", shown)
                        with self.lock:
                            repeated = key in self.seen
                            self.seen.add(key)
                        if repeated:
                            skip_source = True
                            continue
                    write_all(out, raw[already:] + b"\n")
                    with self.lock:
                        self.file.write(shown.encode() + b"\n")
                if pending[echoed:]:  # a line still open (the progress bar): on the terminal now, in the file later
                    write_all(out, pending[echoed:])
                    echoed = len(pending)
        if pending:
            with self.lock:
                self.file.write(pending.decode("utf-8", "replace").rsplit("\r", 1)[-1].replace("\033[K", "").encode())


def write_all(fd: int, data: bytes):
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:  # the terminal went away: the file still gets everything
            return
