"""Fixtures shared by the test suite: tiny models saved once per session, and a cache of CLI runs so that tests
comparing against the same baseline do not launch it twice."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

import helpers  # noqa: E402  (tests/ is on sys.path: pytest inserts a rootless conftest's directory)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return helpers.save_tiny_model(str(tmp_path_factory.mktemp("tiny_llama")), "llama")


@pytest.fixture(scope="session")
def tiny_llama_tied_dir(tmp_path_factory):
    """Tiny Llama whose LM head is its input embedding (tie_word_embeddings, as Llama-3.2-1B)."""
    return helpers.save_tiny_model(str(tmp_path_factory.mktemp("tiny_llama_tied")), "llama", tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    return helpers.save_tiny_model(str(tmp_path_factory.mktemp("tiny_qwen3")), "qwen3")


@pytest.fixture(scope="session")
def ref_one(tiny_llama_dir):
    """Plain transformers' step-1 loss and gradients on row 0 (the reference of the SP and ring tests)."""
    return helpers.reference_loss_and_grads(tiny_llama_dir, helpers.rows(0))


@pytest.fixture(scope="session")
def sp1(cli_runs, tiny_llama_dir):
    """The 3-step run on one process that the SP and ring trajectories are compared with."""
    return helpers.assert_ok(cli_runs.run(helpers.common_overrides(tiny_llama_dir) + ["parallelism.sp_size=1"]))


class JobServer:
    """One tests/job_server.py process per environment: run(overrides, run_dir) is the command `python -m framework
    +experiment=smoke_cpu <overrides> hydra.run.dir=<run_dir>` run by it, torch, transformers and DeepSpeed imported
    once (see tests/job_server.py). The Run's stdout and stderr are both the job's train.log (its whole console)."""

    def __init__(self, root, env):
        self.root, self.env, self.proc, self.started = str(root), env, None, 0

    def start(self):
        self.started += 1
        out = open(os.path.join(self.root, f"server{self.started}.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "job_server.py")],
            cwd=helpers.REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, overrides, run_dir: str, timeout: float = 240, experiment="smoke_cpu") -> helpers.Run:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        done = run_dir.rstrip("/") + ".done.json"
        log = os.path.join(run_dir, "train.log")
        before = os.path.getsize(log) if os.path.exists(log) else 0  # a resumed run appends to the earlier one's
        job = {"overrides": [f"+experiment={experiment}"] * bool(experiment) + list(overrides), "run_dir": run_dir}
        job["done"] = done
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not os.path.exists(done):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the job server ended or timed out on {overrides} (see {self.root})")
            time.sleep(0.05)
        with open(done) as f:
            rc = json.load(f)["returncode"]
        text = ""
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                f.seek(before)
                text = f.read()
        return helpers.load_run(run_dir, rc, text, text)

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class RunCache:
    """run(overrides) runs the command once per distinct override list for the whole session (helpers.run_job)."""

    def __init__(self, root):
        self.root, self.runs = root, {}

    def run(self, overrides, **kw):
        key = tuple(overrides)
        if key not in self.runs:
            run_dir = os.path.join(str(self.root), f"run{len(self.runs)}")
            self.runs[key] = helpers.run_job(list(overrides), run_dir, **kw)
        return self.runs[key]


class JobServers:
    """A job server per environment (a test's sitecustomize hook, for instance, needs one started with it)."""

    def __init__(self, root):
        self.root, self.by_env = root, {}

    KEEP = 2
    """Servers kept alive at once (each holds a launcher and a forkserver, ~0.6 GB): the least recently used goes."""

    def get(self, env=None) -> JobServer:
        env = env or helpers.clean_env()
        # pytest names the running test in PYTEST_CURRENT_TEST: not a difference between two jobs' environments
        key = tuple(sorted((k, v) for k, v in env.items() if k != "PYTEST_CURRENT_TEST"))
        if key not in self.by_env:
            server = JobServer(os.path.join(str(self.root), f"env{len(self.by_env)}"), env)
            os.makedirs(server.root, exist_ok=True)
            self.by_env[key] = server
        server = self.by_env.pop(key)
        self.by_env[key] = server  # the most recently used last
        for other in list(self.by_env.values())[: -self.KEEP]:
            other.stop()
        return server

    def stop(self):
        for server in self.by_env.values():
            server.stop()


@pytest.fixture(scope="session", autouse=True)
def job_servers(tmp_path_factory):
    """The session's job servers (each started at its first job): helpers.run_job and the cli_runs cache use them."""
    servers = JobServers(tmp_path_factory.mktemp("job_servers"))
    helpers.SERVERS = servers
    yield servers
    helpers.SERVERS = None
    servers.stop()


@pytest.fixture(scope="session")
def cli_runs(tmp_path_factory):
    return RunCache(tmp_path_factory.mktemp("cli_runs"))


CLI_FIXTURES = {"cli_runs", "sp1"}

FIRST = (
    "e2e/test_sweep.py",
    "distributed/test_kill_resume.py",
    "e2e/test_bad_inputs.py",
    "e2e/test_cli.py",
    "distributed/test_alst.py",
    "e2e/test_torchrun.py",
)
"""The longest files (2-5 minutes each on 2 cores), collected first, then the other files that start processes, then
the rest: CI's two test processes (`-n 2 --dist loadfile --no-loadscope-reorder`) take whole files in this order, so
no long file is left to end the run alone."""


def pytest_collection_modifyitems(config, items):
    """`slow` marks every test that starts processes: all of tests/distributed and tests/e2e, and a unit test that
    runs the CLI (it calls run_cli or uses a launched run). `python -m pytest -m "not slow"` is the inner loop."""
    slow = pytest.mark.slow
    for item in items:
        parts = set(pathlib.Path(str(item.fspath)).parts)
        code = getattr(getattr(item, "function", None), "__code__", None)
        calls_cli = code is not None and {"run_cli", "run_job"} & set(code.co_names)
        if {"distributed", "e2e"} & parts or calls_cli or CLI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
    tests = pathlib.Path(__file__).parent
    file_of = {id(item): pathlib.Path(str(item.fspath)).relative_to(tests).as_posix() for item in items}
    starts = {file_of[id(item)] for item in items if item.get_closest_marker("slow")}

    def rank(item):
        f = file_of[id(item)]
        return FIRST.index(f) if f in FIRST else len(FIRST) + (f not in starts)

    items.sort(key=rank)  # stable: a file's tests keep their order
