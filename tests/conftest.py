"""Fixtures shared by the test suite: tiny models saved once per session, and a cache of CLI runs so that tests
comparing against the same baseline do not launch it twice."""

import os
import pathlib

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


class RunCache:
    """run(name, overrides) launches the CLI once per distinct override list for the whole session."""

    def __init__(self, root):
        self.root, self.runs = root, {}

    def run(self, overrides, **kw):
        key = tuple(overrides)
        if key not in self.runs:
            run_dir = os.path.join(str(self.root), f"run{len(self.runs)}")
            self.runs[key] = helpers.run_cli(list(overrides), run_dir, **kw)
        return self.runs[key]


@pytest.fixture(scope="session")
def cli_runs(tmp_path_factory):
    return RunCache(tmp_path_factory.mktemp("cli_runs"))


CLI_FIXTURES = {"cli_runs", "sp1"}


def pytest_collection_modifyitems(config, items):
    """`slow` marks every test that starts processes: all of tests/distributed and tests/e2e, and a unit test that
    runs the CLI (it calls run_cli or uses a launched run). `python -m pytest -m "not slow"` is the inner loop."""
    slow = pytest.mark.slow
    for item in items:
        parts = set(pathlib.Path(str(item.fspath)).parts)
        code = getattr(getattr(item, "function", None), "__code__", None)
        calls_cli = code is not None and "run_cli" in code.co_names
        if {"distributed", "e2e"} & parts or calls_cli or CLI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(slow)
