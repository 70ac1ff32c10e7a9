"""The pieces of issue 27 that need no training run: the console copy to train.log, the corpus lines and their
warnings, the key typo hint, and the plan's words."""

import os
import subprocess
import sys

from framework.cli import CONF_DIR
from framework.data.stats import corpus_lines
from framework.help import unknown_key

TEE = """
import subprocess, sys, warnings
from framework.tee import Tee
with Tee(sys.argv[1]):
    print("to stdout", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    for _ in range(5):  # a child process, as the workers are, repeating a warning every step
        subprocess.run([sys.executable, "-c", "import warnings; warnings.warn('deprecated thing', FutureWarning)"])
    sys.stdout.write("bar 1/2\\r\\x1b[Kstep 2 line\\n")
print("after", flush=True)
"""


def test_console_goes_to_the_log_as_well_streams_kept_apart_and_a_repeated_warning_once(tmp_path):
    log = tmp_path / "train.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(CONF_DIR), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", TEE, str(log)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "to stdout" in p.stdout and "to stderr" not in p.stdout and "after" in p.stdout
    assert "to stderr" in p.stderr and p.stderr.count("deprecated thing") == 1, p.stderr
    text = log.read_text()
    assert "to stdout" in text and "to stderr" in text and "after" not in text
    assert text.count("deprecated thing") == 1 and "step 2 line" in text and "bar 1/2" not in text, text


def test_corpus_lines_give_epochs_and_warn_of_a_corpus_shorter_than_a_row_or_repeated_many_times():
    stats = {"documents": 3, "tokens": 100, "rows": 1, "loss_tokens": 40, "seq_length": 512}
    lines = corpus_lines(stats, max_steps=200, rows_per_step=1, path="c.jsonl")
    assert lines[0] == "corpus c.jsonl: 3 documents, 100 tokens -> 1 rows of 512 tokens, 40 tokens with loss"
    assert "200.00 epochs" in lines[1]
    assert any("shorter than one row" in line for line in lines)
    assert any(line.startswith("warning: train.max_steps=200 goes over the corpus 200 times") for line in lines)
    quiet = corpus_lines({**stats, "tokens": 10_000, "rows": 20}, max_steps=10, rows_per_step=1, path="c")
    assert not [line for line in quiet if line.startswith("warning")] and "0.50 epochs" in quiet[1]


def test_unknown_keys_get_the_nearest_one_and_known_keys_and_groups_pass():
    assert "did you mean `optim.lr`?" in unknown_key(["optim.lrr=1"], CONF_DIR)
    assert "did you mean `data.seq_length`?" in unknown_key(["+data.seq_lenght=8"], CONF_DIR)
    assert "did you mean `parallelism.sp_size`?" in unknown_key(["parallelism.sp_sise=2"], CONF_DIR)
    for fine in (
        ["optim.lr=1"],
        ["data=hf"],
        ["+experiment=smoke_cpu"],
        ["model.arch.hidden_size=8"],
        ["hydra.run.dir=x"],
        ["hydra/sweeper=max_seqlen"],
        ["data.seq_length=1,2"],
        ["plan=true"],
        ["~checkpoint.resume"],
        ["+engine.deepspeed.wall_clock_breakdown=true"],
    ):
        assert unknown_key(fine, CONF_DIR) is None, fine


def test_the_warnings_torch_and_liger_give_for_what_we_call_are_dropped_and_others_kept():
    """GPU-only start-up noise (a CPU run never reaches these lines), checked on the filters themselves: torch's
    barrier() device warning and the deprecated collectives' FutureWarnings, and Liger's log line for an optional
    backend it cannot import; an unrelated warning and another failed backend still show."""
    import logging
    import warnings

    from framework.launch import quiet_collectives
    from framework.model.features import quiet_liger_backends

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_collectives()
        warnings.warn("barrier(): using the device under current context. You can specify `device_id` ...", UserWarning)
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated, use ...", FutureWarning)
        warnings.warn("something else the user should see", UserWarning)
    assert [str(w.message) for w in caught] == ["something else the user should see"]

    registry = logging.getLogger("liger_kernel.backends.registry")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    registry.addHandler(handler)
    try:
        line = "Backend impl '%s' for op '%s' could not be imported: %s: %s"
        registry.warning(line, "liger_kernel.ops.backends._cutedsl.rope", "rope", "ImportError", "needs CuTe DSL")
        assert len(seen) == 1  # not filtered before
        quiet_liger_backends()
        quiet_liger_backends()  # once is enough: a second call adds no second filter
        assert len(registry.filters) == 1
        registry.warning(line, "liger_kernel.ops.backends._cutedsl.rope", "rope", "ImportError", "needs CuTe DSL")
        registry.warning(line, "liger_kernel.ops.backends._ascend.rope", "rope", "ImportError", "no tanh")
        registry.warning(line, "liger_kernel.ops.backends._cutile.rms_norm", "rms_norm", "ModuleNotFoundError", "cuda")
        registry.warning(line, "liger_kernel.ops.backends._triton.rope", "rope", "ImportError", "broken")
        assert len(seen) == 2 and "_triton.rope" in seen[1], seen
    finally:
        registry.removeHandler(handler)
        registry.filters.clear()
