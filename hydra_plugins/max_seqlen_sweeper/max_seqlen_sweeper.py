"""The longest-sequence search, as a Hydra sweeper:

    python -m framework -m +experiment=llama8b_500k hydra/sweeper=max_seqlen
    python -m framework -m +experiment=smoke_cpu hydra/sweeper=max_seqlen hydra.sweeper.start=1024 \
        hydra.sweeper.granularity=512 model=tiny_llama,tiny_qwen3     # one search per combination

Each probe is an ordinary job of the sweep (its own directory, result.json, metrics.jsonl; our launcher starts
fresh worker processes for it, so a probe that ran out of memory leaves nothing behind) that trains
`hydra.sweeper.steps` steps at one data.seq_length. On GPUs `start` defaults to the plan's max_seq_length
(framework.plan) and the length then moves by 15% (the plan's tolerance) instead of `factor`, so a search that the
plan predicts well takes a few probes. The length grows geometrically (x `factor`) from `start` until a
probe fails (status oom or failed); if `start` itself fails it shrinks the same way until one trains. It then
bisects the bracket [longest that trained, shortest that failed] down to `granularity` tokens (default
parallelism.sp_size x 1024, so every probe shards evenly). The answer, with the memory figures of the last good
probe and the reason of the failure above it, is printed and saved in <sweep dir>/max_seqlen.json; summary.csv and
summary.png (framework.sweep) list every probe.

Every failure counts as the limit, whatever its cause; max_seqlen.json names it, so check that it is an OOM before
reading the answer as a memory limit. The process exits 0 when every search found a length that trains.
"""

from dataclasses import dataclass
import datetime
import os
import sys
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from framework.files import write_json_atomic
from framework.log import get_logger

log = get_logger(__name__)
RESULT_FILE = "max_seqlen.json"
MEMORY_KEYS = (
    "peak_mem_gib",
    "peak_reserved_gib",
    "peak_mem_pct",
    "host_rss_gib",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "tflops_per_gpu",
    "mfu",
    "step_time_s",
)


@dataclass
class MaxSeqlenSweeperConf:
    _target_: str = "hydra_plugins.max_seqlen_sweeper.max_seqlen_sweeper.MaxSeqlenSweeper"
    start: int = 0
    """First length probed (tokens); 0: the config's data.seq_length rounded down to the granularity."""
    factor: float = 2.0
    """Growth (and, if start fails, shrink) factor between probes before the first failure; > 1."""
    granularity: int = 0
    """Bisect until the longest good and shortest failing lengths are this close (tokens); every probe is a
    multiple of it. 0: parallelism.sp_size x 1024."""
    max_seq_length: int = 16_777_216
    """Stop growing here: the answer is then "at least this" (reached_max in max_seqlen.json)."""
    steps: int = 3
    """Optimizer steps per probe (sets train.max_steps unless the command line does)."""
    key: str = "data.seq_length"
    """The config key searched."""


ConfigStore.instance().store(group="hydra/sweeper", name="max_seqlen", node=MaxSeqlenSweeperConf, provider="framework")


def device_name() -> str:
    """The card the probes ran on (as this process sees it; under a remote launcher, the submitting node's)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    except Exception:  # noqa: BLE001
        pass
    return "cpu"


PLAN_FACTOR = 1.15
"""Growth factor between probes when the search starts from the plan's max_seq_length (its tolerance)."""


def planned_start(job_cfg) -> Optional[int]:
    """The plan's max_seq_length for a job that will run on GPUs (framework.plan); None on CPU processes (the plan
    predicts GPU memory) or when it cannot be made (the first probe then says why)."""
    try:
        from framework.model.build import hf_config
        from framework.plan.planner import make_plan
        from framework.runtime import device_type, world_size

        if device_type(job_cfg.train.device) != "cuda":
            return None
        text = hf_config(name_or_path=job_cfg.model.name_or_path, arch=job_cfg.model.arch).get_text_config()
        return (
            make_plan(job_cfg, text, world_size(job_cfg.parallelism, job_cfg.train.device), search=True).max_seq_length
            or None
        )
    except Exception:  # noqa: BLE001  (a config the job itself will refuse, with its own message)
        return None


def round_down(x: float, g: int) -> int:
    return int(x // g) * g


class MaxSeqlenSweeper(Sweeper):
    def __init__(
        self,
        start: int = 0,
        factor: float = 2.0,
        granularity: int = 0,
        max_seq_length: int = 16_777_216,
        steps: int = 3,
        key: str = "data.seq_length",
    ):
        super().__init__()
        if factor <= 1:
            raise ValueError(f"hydra.sweeper.factor={factor}: must be > 1")
        self.start, self.factor, self.granularity = start, factor, granularity
        self.max_seq_length, self.steps, self.key = max_seq_length, steps, key
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # one probe: a job of the sweep, read back from what it left on disk (any launcher)
    def probe(self, base: List[str], length: int) -> Dict[str, Any]:
        from framework.sweep.summary import read_job

        overrides = base + [f"{self.key}={length}"]
        (ret,) = self.launcher.launch([overrides], initial_job_idx=self.job_idx)
        self.job_idx += 1
        job_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg is not None else None
        row = read_job(job_dir) if job_dir and os.path.isdir(job_dir) else {"status": "missing"}
        if row["status"] == "missing":
            try:
                rec = ret.return_value
                row.update(rec if isinstance(rec, dict) else {})
            except Exception as exc:  # noqa: BLE001  (the job raised: a failure like any other)
                row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        row["seq_length"], row["job_dir"] = length, job_dir
        status = row["status"]
        figures = f"peak {row.get('peak_mem_gib') or 0:.2f} GiB" if status == "ok" else row.get("error") or ""
        log.info(f"max_seqlen: {self.key}={length}: {status} ({figures})")
        return row

    def search(self, base: List[str], job_cfg: DictConfig) -> Dict[str, Any]:
        sp = int(OmegaConf.select(job_cfg, "parallelism.sp_size", default=1) or 1)
        g = self.granularity or sp * 1024
        factor = self.factor
        planned = planned_start(job_cfg) if not self.start and self.key == "data.seq_length" else None
        if planned:  # the plan is within ~15% of the measured walls: bracket in steps of that size around it
            log.info(f"max_seqlen: the plan says {planned} tokens fit; the search starts there")
            factor = min(factor, PLAN_FACTOR)
        start = self.start or planned or OmegaConf.select(job_cfg, self.key, default=g)
        length = max(g, round_down(start, g))
        top = max(g, round_down(self.max_seq_length, g))
        probes: List[Dict[str, Any]] = []
        good: Optional[Dict[str, Any]] = None
        bad: Optional[Dict[str, Any]] = None

        def run(n):
            row = self.probe(base, n)
            probes.append(row)
            return row

        # 1. bracket: grow until a failure (or shrink until a success when the start fails)
        while True:
            row = run(length)
            if row["status"] == "ok":
                good = row
                if bad is not None or length >= top:
                    break
                length = min(top, max(length + g, round_down(length * factor, g)))
            else:
                bad = row
                if good is not None or length <= g:
                    break
                length = max(g, round_down(length / factor, g))
        # 2. bisect down to the granularity
        while good is not None and bad is not None and bad["seq_length"] - good["seq_length"] > g:
            mid = good["seq_length"] + max(1, (bad["seq_length"] - good["seq_length"]) // (2 * g)) * g
            row = run(mid)
            if row["status"] == "ok":
                good = row
            else:
                bad = row
        out: Dict[str, Any] = {
            "overrides": base,
            "key": self.key,
            "max_seq_length": good["seq_length"] if good else None,
            "reached_max": bad is None and good is not None,
            "granularity": g,
            "factor": self.factor,
            "steps_per_probe": self.steps,
            "last_good": (
                {"seq_length": good["seq_length"], "job_dir": good["job_dir"], **{k: good.get(k) for k in MEMORY_KEYS}}
                if good
                else None
            ),
            "first_failure": (
                {
                    "seq_length": bad["seq_length"],
                    "status": bad["status"],
                    "error": bad.get("error"),
                    "job_dir": bad["job_dir"],
                }
                if bad
                else None
            ),
            "probes": [
                {
                    "seq_length": r["seq_length"],
                    "status": r["status"],
                    "peak_mem_gib": r.get("peak_mem_gib"),
                    "tokens_per_s": r.get("tokens_per_s"),
                    "error": r.get("error"),
                    "job_dir": r["job_dir"],
                }
                for r in probes
            ],
        }
        return out

    def sweep(self, arguments: List[str]) -> Any:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        import framework.sweep as fsweep

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides(arguments)
        for o in parsed:
            if o.get_key_element().lstrip("+~") == self.key:
                raise ValueError(
                    f"{self.key} is what hydra/sweeper=max_seqlen searches; give the first length "
                    f"as hydra.sweeper.start={o.get_value_element_as_str()} instead"
                )
        steps = (
            []
            if any(o.get_key_element().lstrip("+") == "train.max_steps" for o in parsed)
            else [f"train.max_steps={self.steps}"]
        )
        (combos,) = BasicSweeper.split_arguments(parsed, None)  # one search per combination of the other sweeps

        sweep_dir = self.config.hydra.sweep.dir
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(self.config, os.path.join(sweep_dir, "multirun.yaml"))
        results: List[Dict[str, Any]] = []
        head = {
            "command": " ".join(["python -m framework", *sys.argv[1:]]),
            "device": device_name(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        for combo in combos:
            base = list(combo) + steps
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, base)
            res = self.search(base, job_cfg)
            results.append(res)
            self.report(res)
            # after every search: a partial answer
            write_json_atomic(os.path.join(sweep_dir, RESULT_FILE), {**head, "searches": results})
        fsweep.set_verdict(0 if all(r["max_seq_length"] for r in results) else 1)
        return results

    def report(self, res: Dict[str, Any]):
        what = " ".join(res["overrides"])
        if not res["max_seq_length"]:
            f = res["first_failure"]
            log.info(
                f"max_seqlen: nothing trains, not even {res['key']}={f['seq_length']} ({f['status']}: "
                f"{f['error']}) [{what}]"
            )
            return
        g = res["last_good"]
        mem = (
            f"peak GPU {g['peak_mem_gib'] or 0:.2f} GiB allocated, {g['peak_reserved_gib'] or 0:.2f} GiB reserved "
            f"({g['peak_mem_pct'] or 0:.0f}%), host RSS {g['host_rss_gib'] or 0:.2f} GiB, "
            f"{g['tokens_per_s'] or 0:,.0f} tok/s"
        )
        if res["reached_max"]:
            limit = "reached hydra.sweeper.max_seq_length without a failure"
        else:
            f = res["first_failure"]
            limit = f"{f['seq_length']}: {f['status']}: {f['error']}"
        log.info(f"max_seqlen: {res['key']}={res['max_seq_length']} trains ({limit}); last good probe: {mem} [{what}]")
