"""Shared test helpers: tiny models on disk, running the CLI as a subprocess, and the plain-transformers reference.

Imported as `helpers` (pytest puts tests/ on sys.path because tests/conftest.py lives there).
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from framework.env import OWN_LAUNCH_ENV

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(REPO, "conf")

# conf/model/tiny_llama.yaml and conf/model/tiny_qwen3.yaml, as transformers config fields
TINY = {
    "llama": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=384,
        max_position_embeddings=65536,
        rope_theta=10000.0,
    ),
    "qwen3": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=384,
        max_position_embeddings=65536,
    ),
}


def save_tiny_model(path: str, family: str = "llama", seed: int = 0, **fields) -> str:
    """Random-weight tiny model saved with save_pretrained, so every run loads the same weights (`fields` override
    the TINY config's)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, **{**TINY[family], **fields})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    return path


def python_words(
    code: str, path, *, flags=(), env: Optional[Dict[str, str]] = None, cwd=None, timeout: int = 300
) -> List[str]:
    """Run `python <flags> -c code` with `path` first on PYTHONPATH (`env`: the whole environment, os.environ by
    default); assert it exits 0 and return its stdout split into words."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def clean_env(**extra) -> Dict[str, str]:
    """The environment for a CLI subprocess: no inherited launcher or PARALLELISM_CONFIG_* variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PARALLELISM_CONFIG_")
        and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", OWN_LAUNCH_ENV)
    }
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("WANDB_MODE", "offline")
    env.update(extra)
    return env


@dataclass
class Run:
    """What one CLI job left behind."""

    run_dir: str
    returncode: int
    stdout: str
    stderr: str
    metrics: List[Dict[str, Any]] = field(default_factory=list)
    result: Optional[Dict[str, Any]] = None

    @property
    def losses(self) -> List[float]:
        return [m["loss"] for m in self.metrics]

    def grads(self, step: int = 1) -> Dict[str, torch.Tensor]:
        return torch.load(os.path.join(self.run_dir, f"grads_step{step}.pt"))

    def describe(self) -> str:
        return f"rc={self.returncode} result={self.result}\n--- stderr tail ---\n{self.stderr[-3000:]}"


def run_cli(
    overrides: List[str],
    run_dir: str,
    *,
    env: Optional[Dict[str, str]] = None,
    timeout: int = 240,
    experiment: Optional[str] = "smoke_cpu",
) -> Run:
    """`python -m framework +experiment=<experiment> <overrides> hydra.run.dir=<run_dir>` in a subprocess."""
    cmd = [sys.executable, "-m", "framework"]
    if experiment:
        cmd.append(f"+experiment={experiment}")
    cmd += list(overrides) + [f"hydra.run.dir={run_dir}"]
    p = subprocess.run(cmd, cwd=REPO, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    return load_run(run_dir, p.returncode, p.stdout, p.stderr)


SERVERS = None
"""The session's job servers (tests/conftest.py JobServers), set while pytest runs."""


def run_job(overrides: List[str], run_dir: str, *, env: Optional[Dict[str, str]] = None, **kw) -> Run:
    """The same job as run_cli(overrides, run_dir, env=env), run by the session's job server for that environment
    (torch, transformers and DeepSpeed imported once: tests/job_server.py); stdout and stderr are both the job's
    console (its train.log). For tests about what a job computes; a test about the command itself (exit status,
    stderr, signals) uses run_cli."""
    if SERVERS is None:
        return run_cli(overrides, run_dir, env=env, **kw)
    return SERVERS.get(env).run(list(overrides), run_dir, **kw)


def load_run(run_dir: str, returncode: int, stdout: str, stderr: str) -> Run:
    """A finished job's Run: its exit status and output, with its metrics.jsonl and result.json read."""
    run = Run(run_dir=run_dir, returncode=returncode, stdout=stdout, stderr=stderr)
    mpath, rpath = os.path.join(run_dir, "metrics.jsonl"), os.path.join(run_dir, "result.json")
    if os.path.exists(mpath):
        run.metrics = [json.loads(line) for line in open(mpath).read().splitlines() if line.strip()]
    if os.path.exists(rpath):
        run.result = json.load(open(rpath))
    return run


def synthetic_row(index: int, *, seq_length: int, vocab_size: int, seed: int) -> torch.Tensor:
    """Row `index` of data=synthetic (framework.data.SyntheticRows: a pure function of (train.seed, index))."""
    from framework.data import SyntheticRows

    return SyntheticRows(num_samples=index + 1, lengths=[seq_length], vocab_size=vocab_size, seed=seed)[index][
        "input_ids"
    ]


def reference_loss_and_grads(model_dir: str, rows: torch.Tensor):
    """Plain transformers on one process, fp32, sdpa: the causal-LM loss over `rows` [b, s] (sum of CE over every
    valid shifted label / their count) and every parameter's gradient of it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    logits = model(input_ids=rows).logits.float()
    targets = rows[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
    )
    loss = ce / targets.numel()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def max_rel_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """Largest ||a - b|| / ||b|| over the parameters (both dicts must hold the same names)."""
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    worst = 0.0
    for k in b:
        assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
        worst = max(worst, ((a[k] - b[k]).norm() / b[k].norm().clamp(min=1e-30)).item())
    return worst


# The runs the SP and ALST tests compare: 256-token synthetic rows in file order (data.shuffle=false, so optimizer
# step k of one DP replica processes row k-1), 3 steps, full step-1 gradients dumped.
SEQ, VOCAB, SEED = 256, 384, 42


def common_overrides(model_dir: str) -> List[str]:
    return [
        f"model.name_or_path={model_dir}",
        "train.max_steps=3",
        f"data.seq_length={SEQ}",
        "data.shuffle=false",
        "train.dump_grads=true",
    ]


def rows(*indices: int) -> torch.Tensor:
    """Rows `indices` of those runs' synthetic data, `[len(indices), SEQ]`."""
    return torch.stack([synthetic_row(i, seq_length=SEQ, vocab_size=VOCAB, seed=SEED) for i in indices])


def assert_ok(run: Run, steps: int = 3) -> Run:
    assert run.returncode == 0 and run.result and run.result["status"] == "ok", run.describe()
    assert len(run.metrics) == steps, run.describe()
    return run


def assert_trajectories_agree(a: Run, b: Run, rtol: float = 1e-5):
    """Same loss, grad norm and lr at every step (the grad norm catches a gradient scaled by a constant, which Adam's
    update alone would hide)."""
    import pytest

    assert len(a.metrics) == len(b.metrics)
    for ma, mb in zip(a.metrics, b.metrics):
        assert ma["step"] == mb["step"]
        assert ma["loss"] == pytest.approx(mb["loss"], rel=rtol), (a.losses, b.losses)
        assert ma["grad_norm"] == pytest.approx(mb["grad_norm"], rel=rtol), (ma["grad_norm"], mb["grad_norm"])
        assert ma["lr"] == pytest.approx(mb["lr"], rel=1e-12)


def compose(overrides: List[str] = (), experiment: Optional[str] = "smoke_cpu"):
    """The config the CLI would compose for these overrides (Hydra's compose API, in this process)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from framework.config import register

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        extra = [f"+experiment={experiment}"] if experiment else []
        return hydra_compose(config_name="config", overrides=extra + list(overrides))


def complete_wandb_records(run_path: str, timeout: float = 30.0) -> list:
    """An offline W&B run's records once its log is complete (it ends with the exit record). W&B's service process
    can still be writing a run's log after finish() has returned: 2 of 10 reads of a resumed run were empty."""
    import time

    from framework.tracker.wandb import read_offline_run

    deadline = time.monotonic() + timeout
    while True:
        recs = list(read_offline_run(run_path))
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)
