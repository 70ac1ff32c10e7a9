"""One launcher process for many test jobs: `python tests/job_server.py` reads one job per line on stdin
(`{"overrides": [...], "run_dir": "...", "done": "<file>"}`), runs each as the command `python -m framework
<overrides> hydra.run.dir=<run_dir>` would (compose, then framework.cli.run_job with the console copied to
train.log), and writes `{"returncode": N}` to the job's `done` file when it ends.

Why: a CLI launch on CI's 2 cores spends 10-15 s importing torch, transformers and DeepSpeed (the command's own
process and the forkserver its workers fork from) before its first step. Here both are imported once for the whole
test session, as a Hydra multirun imports them once for all its jobs (the same code path: run_job per job, one
forkserver for all); each job then costs its validation, its workers and its steps. Tests that are about the command
itself (exit status, stderr, signals, environment) still launch it on its own (helpers.run_cli).
"""

import json
import os
import sys
import traceback


def main():
    from framework.runtime import mark_start

    mark_start()
    from framework.config import register

    register()
    from framework.launch import start_forkserver

    start_forkserver([])
    from hydra import compose, initialize_config_dir

    from framework.cli import CONF_DIR, LOG, console_to, exit_status, run_job
    from framework.files import write_json_atomic

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="framework"):
        for line in sys.stdin:
            if not line.strip():
                continue
            job = json.loads(line)
            run_dir, rc = job["run_dir"], 1
            os.makedirs(run_dir, exist_ok=True)
            try:
                cfg = compose(config_name="config", overrides=job["overrides"])
                with console_to(os.path.join(run_dir, LOG)):
                    rc = exit_status(run_job(cfg, run_dir))
            except BaseException:  # noqa: BLE001  (the job failed; the server goes on with the next one)
                with open(os.path.join(run_dir, LOG), "a") as f:
                    f.write(traceback.format_exc())
            write_json_atomic(job["done"], {"returncode": rc})


if __name__ == "__main__":
    main()
