"""W&B tracker (tracker=wandb), built on rank 0 only.

- Offline unless the environment says otherwise (WANDB_MODE, or tracker.mode): a run with no network never waits
  for one. An offline run lies in <run_dir>/wandb/offline-run-*; `wandb sync <that dir>` uploads it later.
- Rank 0 logs the step metrics; W&B's system monitor of that process samples every GPU of its node (the workers
  all see every card), so GPU memory and utilisation cover each rank of a one-node job.
- The resolved config is the run's config. In a multirun the runs share a group (the sweep directory) and each
  is named by its overrides, so W&B's runs table compares a sweep at a glance from the summary metrics.
- The run id is kept in <run_dir>/wandb_run_id; a run started with checkpoint.resume continues that W&B run.
- A missing or broken W&B never stops training: the first failure is reported once, W&B is off from then on.
"""

import json
import os
import struct
import sys
from typing import Any, Dict, Iterator, List, Optional

from framework.log import get_logger

log = get_logger(__name__)
RUN_ID_FILE = "wandb_run_id"
# summary fields: how each is reduced over the steps this process ran (the first step, which carries the warm-up,
# is left out of the means when there are others)
MAX_KEYS = (
    "peak_mem_gib",
    "peak_reserved_gib",
    "peak_mem_pct",
    "host_rss_gib",
    "host_used_gib",
    "pinned_gib",
    "pinned_peak_gib",
)
MEAN_KEYS = ("tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu", "step_time_s")
LAST_KEYS = ("step", "loss", "grad_norm", "lr", "seq_length")


def job_overrides(run_dir: str) -> List[str]:
    """The job's command-line overrides, as Hydra saved them in <run_dir>/.hydra/overrides.yaml ([] if none)."""
    path = os.path.join(run_dir, ".hydra", "overrides.yaml")
    if not os.path.exists(path):
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def sweep_group(run_dir: str) -> Optional[str]:
    """The sweep directory of a multirun job (Hydra writes multirun.yaml at the sweep root), else None. Relative to
    the working directory when under it (multirun/2026-01-31/12-00-00), else its last component."""
    sweep = os.path.dirname(os.path.abspath(run_dir))
    if not os.path.exists(os.path.join(sweep, "multirun.yaml")):
        return None
    return group_name(sweep)


def group_name(sweep_dir: str) -> str:
    """The W&B group of a sweep's runs: its directory relative to the working directory when under it, else its last
    component."""
    rel = os.path.relpath(os.path.abspath(sweep_dir))
    return rel if not rel.startswith("..") else os.path.basename(os.path.abspath(sweep_dir))


def previous_run_id(run_dir: str, resume: Optional[str]) -> Optional[str]:
    """The W&B run id of the run that checkpoint.resume continues: this run directory's, or that of the run directory
    holding the checkpoint given (<run>/checkpoints or <run>/checkpoints/step_N)."""
    if not resume:
        return None
    places = [run_dir]
    if resume != "latest":
        path = os.path.abspath(resume.rstrip("/"))
        places += [os.path.dirname(path), os.path.dirname(os.path.dirname(path))]
    for place in places:
        path = os.path.join(place, RUN_ID_FILE)
        if os.path.exists(path):
            return open(path).read().strip() or None
    return None


class WandbTracker:
    """log_config(config) starts the W&B run, log(metrics) logs one step, finish(summary) sets the summary."""

    def __init__(self, *, cfg, run_dir: str):
        self.cfg, self.run_dir = cfg, run_dir
        self.run = None
        self.off = False  # set at the first failure; nothing is tried again
        self.steps: List[Dict[str, Any]] = []

    def _fail(self, what: str, exc: BaseException):
        if not self.off:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            log.warning(f"wandb: {what} failed ({reason}); training goes on without W&B")
        self.off = True

    def log_config(self, config: Dict[str, Any]):
        if self.off or self.run is not None:
            return
        try:
            import wandb
        except Exception as exc:  # noqa: BLE001  (not installed, or broken on import)
            return self._fail("import wandb", exc)
        try:
            mode = str(self.cfg.get("mode") or os.environ.get("WANDB_MODE") or "offline")
            resume = (config.get("checkpoint") or {}).get("resume")
            run_id = previous_run_id(self.run_dir, resume)
            overrides = job_overrides(self.run_dir)
            self.run = wandb.init(
                project=self.cfg.get("project") or "framework",
                entity=self.cfg.get("entity"),
                group=self.cfg.get("group") or sweep_group(self.run_dir),
                name=self.cfg.get("name") or (" ".join(overrides) or os.path.basename(os.path.abspath(self.run_dir))),
                tags=list(self.cfg.get("tags") or []),
                config=config,
                dir=self.run_dir,
                mode=mode,
                id=run_id,
                resume="allow" if run_id else None,
                settings=wandb.Settings(silent=True, init_timeout=60),
            )
            with open(os.path.join(self.run_dir, RUN_ID_FILE), "w") as f:
                f.write(self.run.id + "\n")
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
            where = f" in {self.run.dir}" if mode == "offline" else ""
            log.info(f"wandb: {mode} run {self.run.id}{' (resumed)' if run_id else ''}{where}")
        except Exception as exc:  # noqa: BLE001
            self.run = None
            self._fail("wandb.init", exc)

    def log(self, metrics: Dict[str, Any]):
        self.steps.append(metrics)
        if self.off or self.run is None:
            return
        try:
            self.run.log(self.eval_charts(dict(metrics)), step=int(metrics["step"]), commit=True)
        except Exception as exc:  # noqa: BLE001
            self._fail("wandb.log", exc)

    def eval_charts(self, m: Dict[str, Any]) -> Dict[str, Any]:
        """The evaluation's lists as W&B charts: each position bucket's loss as its own scalar (a line over the
        steps, `eval_loss_by_position/<lo>-<hi>`), this evaluation's loss-by-position curve (`eval/loss_by_position`),
        and with passkey the step's cases as a table (`eval/passkey_cases`) and its heatmap (`eval/passkey_heatmap`,
        the picture of eval/passkey_step_N.png)."""
        import wandb

        buckets = m.pop("eval_loss_by_position", None)
        if buckets:
            for lo, hi, loss, _ in buckets:
                if loss is not None:
                    m[f"eval_loss_by_position/{lo}-{hi}"] = loss
            table = wandb.Table(
                columns=["position", "loss", "tokens"],
                data=[[(max(lo, 1) * hi) ** 0.5, loss, n] for lo, hi, loss, n in buckets if loss is not None],
            )
            m["eval/loss_by_position"] = wandb.plot.line(
                table, "position", "loss", title=f"loss by position, step {m['step']}"
            )
        cases = os.path.join(self.run_dir, "eval", f"passkey_step_{m['step']}.jsonl")
        if "eval_passkey_accuracy" in m and os.path.exists(cases):
            with open(cases) as f:
                rows = [json.loads(line) for line in f]
            cols = ["length", "depth", "answer_start", "correct", "answer_logprob", "answer_ids", "predicted_ids"]
            m["eval/passkey_cases"] = wandb.Table(
                columns=cols, data=[[r[c] if not isinstance(r[c], list) else str(r[c]) for c in cols] for r in rows]
            )
            png = cases[: -len(".jsonl")] + ".png"
            if os.path.exists(png):
                m["eval/passkey_heatmap"] = wandb.Image(png)
        return m

    def summary(self, extra: Dict[str, Any]) -> Dict[str, Any]:
        """What the runs table shows: last values, peaks (max) and throughput (mean past the warm-up step)."""
        out: Dict[str, Any] = {}
        steady = self.steps[1:] or self.steps
        for k in LAST_KEYS:
            if self.steps and k in self.steps[-1]:
                out[k] = self.steps[-1][k]
        for k in MAX_KEYS:
            vals = [m[k] for m in self.steps if m.get(k) is not None]
            if vals:
                out[k] = max(vals)
        for k in MEAN_KEYS:
            vals = [m[k] for m in steady if m.get(k) is not None]
            if vals:
                out[k] = sum(vals) / len(vals)
        out["steps"] = out.get("step", 0)
        out["final_loss"] = out.get("loss")
        for k, v in extra.items():
            out.setdefault(k, v)
        return out

    def finish(self, summary: Dict[str, Any]):
        """Set the summary metrics and close the run. Called from a `finally`: a training exception in flight
        marks the run failed (status oom/failed, exit code 1)."""
        if self.off or self.run is None:
            return
        exc = sys.exc_info()[1]
        status = "ok"
        if exc is not None:
            text = str(exc).lower()
            status = "oom" if isinstance(exc, MemoryError) or "out of memory" in text else "failed"
        try:
            self.run.summary.update({**self.summary(summary), "status": status})
            self.run.finish(exit_code=0 if exc is None else 1)
        except Exception as e:  # noqa: BLE001
            self._fail("wandb.finish", e)
        self.run = None


def read_offline_run(run_path: str) -> Iterator[Any]:
    """The records (wandb.proto Record messages) of an offline run: its .wandb file, or the offline-run-* directory
    holding it. W&B's transaction log is LevelDB's log format (32 KiB blocks; each chunk has a 7-byte header:
    crc32c, length, type) after a 7-byte W&B header; each assembled payload is one protobuf Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    if os.path.isdir(run_path):
        run_path = next(os.path.join(run_path, n) for n in sorted(os.listdir(run_path)) if n.endswith(".wandb"))
    data = open(run_path, "rb").read()
    if data[:4] != b":W&B":
        raise ValueError(f"{run_path} is not a W&B transaction log")
    block, pos, parts = 32768, 7, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += block - pos % block if pos % block else 0
            continue
        parts.append(chunk)
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            parts = []
            yield rec
