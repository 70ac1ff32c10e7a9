"""The command line: compose (Hydra) → validate → launch. `python -m framework +experiment=smoke_cpu`."""
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from framework.config import moved_key, register
from framework.errors import ConfigError
from framework.runtime import VALIDATED_ENV, device_type, since_start

register()
CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
"""The config tree. framework/conf is a link to the repository's top-level conf/ in a checkout (and an editable
install), and a copy of it inside a wheel, so the command finds its configs from any directory."""


def run_job(cfg: DictConfig, run_dir: str) -> dict:
    """One job, holding its run directory's lock (two jobs never share one)."""
    from framework.rundir import RunLock

    os.makedirs(run_dir, exist_ok=True)
    lock = RunLock(run_dir)
    try:
        return run_locked(cfg, run_dir, lock)
    finally:
        lock.release()


def run_locked(cfg: DictConfig, run_dir: str, lock) -> dict:
    """One job: validate, write config.yaml, launch the workers, return the result record."""
    from framework.launch import RESULT, launch, result_record, write_json_atomic
    from framework.rundir import finished, holds_run, prepare
    from framework.validate import validate

    try:
        lock.acquire()
        checked = validate(cfg, run_dir=run_dir)
        if not cfg.get("plan", False) and device_type(cfg.train.device) == "cpu":  # DeepSpeed JIT-builds its CPU op
            from framework.engine.jit import prepare_cpu_op

            prepare_cpu_op(timeout_s=60 * cfg.engine.timeout_minutes, say=lambda line: print(line, flush=True))
        os.environ[VALIDATED_ENV] = f"{since_start():.2f}"  # inherited by the workers, for result.json's `startup`
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        rec = result_record("failed", None, cfg, error=f"config error: {exc}")
        rec["seq_length"] = OmegaConf.select(cfg, "data.seq_length", default=None, throw_on_resolution_failure=False)
        if lock.held and not holds_run(run_dir):  # another job's, or an earlier run's, result.json stays
            write_json_atomic(os.path.join(run_dir, RESULT), rec)
        return rec
    done = finished(run_dir, checked.resume_step, cfg.train.max_steps)
    if done is not None:  # resumed at its last step, and it ended well: its record stays as it is
        print(f"nothing to do: {run_dir} finished train.max_steps={cfg.train.max_steps} steps already "
              "(result.json, metrics.jsonl and model/ left as they are)", flush=True)
        return done
    for line in prepare(run_dir, checked.resume_step, checked.resume_skipped):  # a resumed run: cut back to it
        print(line, flush=True)
    OmegaConf.save(cfg, os.path.join(run_dir, "config.yaml"), resolve=True)  # `auto` switches resolved by now
    if cfg.get("plan", False):  # predict only: no worker starts, no GPU is needed
        from framework.plan.planner import write

        print(checked.plan.table(), flush=True)
        write(checked.plan, run_dir)
        f = checked.plan.figures
        rec = result_record("ok", {"step": 0, "seq_length": cfg.data.seq_length, "peak_mem_gib": f["gpu_peak_gib"],
                                   "tokens_per_s": f["tokens_per_s"], "step_time_s": f["step_time_s"]}, cfg)
        write_json_atomic(os.path.join(run_dir, RESULT), rec)
        return rec
    if checked.plan is not None and checked.plan.hardware.assumed is None:
        from framework.plan.planner import write

        print(checked.plan.line(), flush=True)
        write(checked.plan, run_dir)  # the prediction beside what the run measures (the sweep plot draws both)
    if cfg.engine.offload_optimizer or cfg.engine.offload_params or cfg.model.offload_activations:
        from framework.plan.memory import describe

        print(describe(cfg, checked.world, checked.text_config), flush=True)
    return launch(cfg, run_dir, checked.world, resume_dir=checked.resume_dir)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig):
    hc = HydraConfig.get()
    try:
        rec = run_job(cfg, hc.runtime.output_dir)
    except Exception as exc:  # a job's own failure is recorded, so a sweep goes on (and its exit status says so)
        if hc.mode.name == "RUN":
            raise
        from framework.launch import RESULT, one_line, result_record, write_json_atomic

        rec = result_record("failed", None, cfg, error=one_line(exc))
        write_json_atomic(os.path.join(hc.runtime.output_dir, RESULT), rec)
    status = rec.get("status", "failed")
    line = f"[{status}] {hc.runtime.output_dir}"
    if status != "ok":
        line += f": {rec.get('error', '')}"
    print(line, flush=True)
    if status != "ok" and hc.mode.name == "RUN":
        sys.exit(2 if rec.get("error", "").startswith("config error") else 1)
    return rec


def main():
    from framework.launch import adopt_slurm_env
    from framework.runtime import mark_start

    mark_start()  # start-up phases are timed from here (result.json's `startup`)
    moved = moved_key(sys.argv[1:])
    if moved:
        print(f"config error: {moved[0]}: this key moved to {moved[1]} (the step loop, checkpoints and evaluation "
              f"have groups of their own: train, checkpoint, eval); fix: write {moved[1]}=... instead",
              file=sys.stderr, flush=True)
        sys.exit(2)
    adopt_slurm_env()
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return follower_main()
    from framework.launch import Interrupted

    try:
        app()
    except Interrupted as exc:  # result.json says so; a sweep starts no further job
        from framework.sweep import summarize_interrupted

        summarize_interrupted()  # a multirun: the summary of the jobs that ran, the interrupted one marked
        print(f"[interrupted] {exc}", file=sys.stderr, flush=True)
        sys.exit(128 + exc.signum)
    from framework.sweep import exit_code

    if exit_code():  # a multirun in which some job failed (Hydra itself returns normally)
        sys.exit(exit_code())


def follower_main():
    """A rank > 0 started by torchrun/SLURM: join the job; rank 0 sends it the run directory and the config it
    validated. The rank composes the command's config only for what joining needs (train.device: the backend;
    engine.timeout_minutes: how long it waits for rank 0 to validate and tokenize)."""
    from hydra import compose, initialize_config_dir

    from framework.launch import worker

    overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=False)
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception:  # noqa: BLE001  (--config-dir / -cn configs only rank 0 reads: rank 0 reports any error)
        container = {"train": {"device": "auto"}, "engine": {"timeout_minutes": 30}}
    worker(container, run_dir=None)
