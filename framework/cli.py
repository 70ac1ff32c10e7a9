"""The command line: compose (Hydra) → validate → launch. `python -m framework +experiment=smoke_cpu`."""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from framework.env import JOB_STARTED_ENV, VALIDATED_ENV
from framework.errors import ConfigError
from framework.log import get_logger
from framework.runtime import device_type, since_start

log = get_logger(__name__)
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
    # when this job started, for result.json's `startup` (0: the command's first job; a multirun's later ones later)
    os.environ[JOB_STARTED_ENV] = f"{since_start():.2f}" if JOB_STARTED_ENV in os.environ else "0"
    from framework.files import write_json_atomic
    from framework.launch import RESULT, launch, result_record
    from framework.rundir import finished, holds_run, prepare
    from framework.validate import validate

    try:
        lock.acquire()
        checked = validate(cfg, run_dir=run_dir)
        if not cfg.get("plan", False) and device_type(cfg.train.device) == "cpu":  # DeepSpeed JIT-builds its CPU op
            from framework.engine.jit import prepare_cpu_op

            prepare_cpu_op(timeout_s=60 * cfg.engine.timeout_minutes, say=log.info)
        os.environ[VALIDATED_ENV] = f"{since_start():.2f}"  # inherited by the workers, for result.json's `startup`
    except ConfigError as exc:
        log.error(f"config error: {exc}")
        rec = result_record("failed", None, cfg, error=f"config error: {exc}")
        rec["seq_length"] = OmegaConf.select(cfg, "data.seq_length", default=None, throw_on_resolution_failure=False)
        if lock.held and not holds_run(run_dir):  # another job's, or an earlier run's, result.json stays
            write_json_atomic(os.path.join(run_dir, RESULT), rec)
        return rec
    done = finished(run_dir, checked.resume_step, cfg.train.max_steps)
    if done is not None:  # resumed at its last step, and it ended well: its record stays as it is
        log.info(
            f"nothing to do: {run_dir} finished train.max_steps={cfg.train.max_steps} steps already "
            "(result.json, metrics.jsonl and model/ left as they are)"
        )
        return done
    for line in prepare(run_dir, checked.resume_step, checked.resume_skipped):  # a resumed run: cut back to it
        log.info(line)
    for line in start_lines(cfg, run_dir, checked):
        log.info(line)
    OmegaConf.save(cfg, os.path.join(run_dir, "config.yaml"), resolve=True)  # `auto` switches resolved by now
    if cfg.get("plan", False):  # predict only: no worker starts, no GPU is needed
        from framework.plan.explain import report, verdict
        from framework.plan.planner import write

        log.info(report(checked.plan, world=checked.world, seq_length=cfg.data.seq_length))
        write(checked.plan, run_dir)
        f = checked.plan.figures
        rec = result_record(
            "ok",
            {
                "step": 0,
                "seq_length": cfg.data.seq_length,
                "peak_mem_gib": f["gpu_peak_gib"],
                "tokens_per_s": f["tokens_per_s"],
                "step_time_s": f["step_time_s"],
            },
            cfg,
        )
        write_json_atomic(os.path.join(run_dir, RESULT), rec)
        return {**rec, "verdict": verdict(checked.plan, run_dir), "fits": f["fits"]}  # the command's last line
    if checked.plan is not None and checked.plan.hardware.assumed is None:
        from framework.plan.planner import write

        log.info(checked.plan.line())
        write(checked.plan, run_dir)  # the prediction beside what the run measures (the sweep plot draws both)
    if cfg.engine.offload_optimizer or cfg.engine.offload_params or cfg.model.offload_activations:
        from framework.plan.memory import describe

        log.info(describe(cfg, checked.world, checked.text_config))
    return launch(cfg, run_dir, checked.world, resume_dir=checked.resume_dir)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig):
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    with console_to(os.path.join(run_dir, LOG)) as tee:
        try:
            rec = run_job(cfg, run_dir)
        except Exception as exc:  # a job's own failure is recorded, so a sweep goes on (and its exit status says so)
            if hc.mode.name == "RUN":
                raise
            from framework.files import write_json_atomic
            from framework.launch import RESULT, one_line, result_record

            rec = result_record("failed", None, cfg, error=one_line(exc))
            write_json_atomic(os.path.join(run_dir, RESULT), rec)
        status = rec.get("status", "failed")
        config_error = rec.get("error", "").startswith("config error")
        chosen = any(o.startswith("hydra.run.dir=") for o in hc.overrides.hydra)  # the user's: kept, result.json in it
        if config_error and hc.mode.name == "RUN" and not chosen:
            tee.close()
            discard(run_dir)  # a mistake leaves no run directory behind under outputs/ (the message says it all)
            run_dir = "(no run directory kept)"
        line = f"[{status}] {run_dir}"
        if "verdict" in rec:  # plan=true: [ok] or [no-fit], with the fix
            line = rec["verdict"]
        elif status != "ok":
            line += f": {rec.get('error', '')}"
        log.info(line)
    if exit_status(rec) and hc.mode.name == "RUN":
        sys.exit(exit_status(rec))
    return rec


def exit_status(rec: dict) -> int:
    """The command's exit status for a job's record: 0 when it ended well (plan=true: the plan fits), 2 for a config
    error or a plan that does not fit, 1 for any other failure."""
    if "verdict" in rec:
        return 0 if rec["fits"] else 2
    if rec.get("status", "failed") == "ok":
        return 0
    return 2 if rec.get("error", "").startswith("config error") else 1


def start_lines(cfg: DictConfig, run_dir: str, checked) -> list:
    """What the job is about to do, said before any worker starts: where it writes, what differs from the defaults,
    and for data=hf what the corpus holds and how many epochs train.max_steps means."""
    what = "plan" if cfg.get("plan", False) else "resume" if checked.resume_step else "run"
    lines = [f"{what} directory: {run_dir}" + (f" (from step {checked.resume_step})" if checked.resume_step else "")]
    diff = config_diff(cfg)
    lines.append("config, where it differs from the defaults: " + (" ".join(diff) if diff else "(the defaults)"))
    lines += list(checked.notes)
    if checked.corpus is not None and not cfg.get("plan", False):
        from framework.data.stats import corpus_lines, corpus_stats

        p, t = cfg.parallelism, cfg.train
        rows_per_step = (
            t.micro_batch_size * t.gradient_accumulation_steps * max(checked.world // (p.sp_size * p.cp_size), 1)
        )
        lines += corpus_lines(
            corpus_stats(checked.corpus), max_steps=t.max_steps, rows_per_step=rows_per_step, path=cfg.data.path
        )
    return lines


def config_diff(cfg: DictConfig) -> list:
    """`key=value` for every key whose value is not conf/config.yaml's default (the experiment's and the command
    line's choices, and what validation resolved, such as the `auto` switches)."""
    from hydra import compose

    try:
        default = compose(config_name="config", overrides=[])  # inside the running app: Hydra is initialized
    except Exception:  # noqa: BLE001  (not under Hydra's app: no defaults to compare with)
        return []

    def flat(node, prefix=""):
        out = {}
        for k in node:
            v = node._get_node(k)
            if OmegaConf.is_dict(v):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                try:
                    out[f"{prefix}{k}"] = (
                        OmegaConf.to_container(OmegaConf.create({"v": v}), resolve=True)["v"]
                        if OmegaConf.is_list(v)
                        else node[k]
                    )
                except Exception:  # noqa: BLE001  (an unresolvable default: compared as written)
                    out[f"{prefix}{k}"] = str(v._value())
        return out

    now, was = flat(cfg), flat(default)
    shown = []
    for key, value in now.items():
        if key.endswith("._target_") or (key in was and was[key] == value):
            continue
        value = getattr(value, "value", value)
        shown.append(f"{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}")
    return shown


LOG = "train.log"
"""The console output of a run, kept in its run directory (Hydra's job log, named by hydra.job.name, is this file)."""


def discard(run_dir: str):
    """Remove a run directory that this command created and that holds no run (a config error's), and its date
    folder when that is left empty."""
    import shutil

    from framework.rundir import holds_run

    if holds_run(run_dir):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(run_dir))
    except OSError:
        pass  # other runs live there


def console_to(path: str):
    """Copy what this process and the workers it starts print (stdout and stderr, at the file-descriptor level) to
    `path` as well, with a warning repeated word for word shown once. See framework/tee.py."""
    from framework.tee import Tee

    return Tee(path)


def main():
    from framework.launch import adopt_slurm_env, start_forkserver
    from framework.runtime import mark_start

    mark_start()  # start-up phases are timed from here (result.json's `startup`)
    from framework.bytecode import cache_bytecode

    pycache = cache_bytecode()  # PYTHONDONTWRITEBYTECODE set: compiled modules kept in a folder of the framework's
    # first of all: the workers' imports, in another process, while this one imports its own, composes and validates
    # (an error below ends the command, and the server with it: framework.preload.watch_launcher)
    start_forkserver(sys.argv[1:])
    from framework.config import moved_key, register

    register()
    if pycache:
        log.info(
            f"bytecode: PYTHONDONTWRITEBYTECODE is set, so every process compiled each module from source at every "
            f"start; compiled modules are kept in {pycache} instead (FRAMEWORK_PYCACHE=<dir> moves them, "
            "FRAMEWORK_PYCACHE=0 turns this off)"
        )
    moved = moved_key(sys.argv[1:])
    if moved:
        log.error(
            f"config error: {moved[0]}: this key moved to {moved[1]} (the step loop, checkpoints and "
            f"evaluation have groups of their own: train, checkpoint, eval). Fix: write {moved[1]}=... instead"
        )
        sys.exit(2)
    precheck(sys.argv)
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
        log.error(f"[interrupted] {exc}")
        sys.exit(128 + exc.signum)
    from framework.sweep import exit_code

    if exit_code():  # a multirun in which some job failed (Hydra itself returns normally)
        sys.exit(exit_code())


FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--config-dir",
    "-cd",
    "--shell-completion",
    "-sc",
    "--experimental-rerun",
}


def overrides_of(argv) -> list:
    """The key=value and group=option arguments of a command line (its flags and their values left out)."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def precheck(argv):
    """What Hydra would report with a traceback or a hint meant for its own users, said in one line (exit 2) before
    anything is composed or created: a key not in the schema (with the nearest one), a required key missing under
    `--cfg ... --resolve`. A checkpoint.resume path continues in its own run directory (argv gains hydra.run.dir)."""
    from framework.help import unknown_key

    overrides = overrides_of(argv)
    if any(a.startswith("-sc") or a == "--shell-completion" for a in argv[1:]):
        return
    error = unknown_key(overrides, CONF_DIR)
    if error:
        log.error(error)
        sys.exit(2)
    if (
        "--resolve" in argv
        and ({"--cfg", "-c"} & set(argv))
        and not ({"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"} & set(argv))
    ):
        error = required_missing(overrides)
        if error:
            log.error(error)
            sys.exit(2)
    multirun = "-m" in argv or "--multirun" in argv
    if not multirun and not any(o.startswith("hydra.run.dir=") for o in overrides):
        run_dir = resume_run_dir(overrides)
        if run_dir:
            argv.append(f"hydra.run.dir={run_dir}")


def required_missing(overrides) -> str:
    """The one-line error for a `${required:}` value the command line left unset ('' when none is)."""
    from hydra import compose, initialize_config_dir
    from omegaconf.errors import OmegaConfBaseException

    from framework.config import REQUIRED

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        if REQUIRED in str(exc):
            key = getattr(exc, "full_key", "?")
            return f"config error: {ConfigError(key, None, REQUIRED, f'add {key}=... to the command')}"
    except Exception:  # noqa: BLE001  (anything else: Hydra reports it as it does)
        pass
    return ""


def resume_run_dir(overrides) -> str:
    """The run directory a `checkpoint.resume=<path>` belongs to: the path itself when it holds a run's config.yaml,
    the folder above a checkpoints/ folder, two above a checkpoints/step_N. '' for latest, null or no such path."""
    value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("checkpoint.resume=")), "")
    if value in ("", "latest", "null", "None") or not os.path.isdir(value):
        return ""
    path = os.path.abspath(value.rstrip("/"))
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.exists(os.path.join(candidate, "config.yaml")) and os.path.isdir(
            os.path.join(candidate, "checkpoints")
        ):
            return candidate
    return ""


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
