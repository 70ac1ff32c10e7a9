"""launch: one worker process per rank (torch's elastic launcher, as torchrun does it), or run as the rank that
torchrun / SLURM already started. Writes result.json once, from rank 0 or from the launcher when a worker died."""

import contextlib
import io
import json
import os
import re
import socket
import sys
import time
import traceback
import uuid
import warnings
from typing import Any, Dict, Optional

from framework.env import FORKSERVER_ENV, JOB_ENV, OWN_LAUNCH_ENV
from framework.files import write_json_atomic

RESULT = "result.json"


def classify(exc: BaseException) -> str:
    """'oom' for GPU or host out-of-memory, else 'failed'."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "oom"
    text = str(exc).lower()
    return "oom" if "out of memory" in text or "cuda error: out of memory" in text else "failed"


def one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}"[:500]


class Interrupted(BaseException):
    """The job was stopped by a signal (SIGTERM from `timeout`, `kill` or a scheduler; SIGHUP; SIGINT): result.json
    says so (status failed, error "interrupted: stopped by SIGTERM"). A BaseException, so that neither the CLI nor
    Hydra's launcher takes it for one job's failure: a sweep stops there instead of starting its next job."""

    def __init__(self, run_dir: str, sig):
        super().__init__(f"{run_dir}: stopped by {sig.name}")
        self.signum = int(sig)


def result_record(status: str, last: Optional[Dict[str, Any]], cfg, error: Optional[str] = None) -> Dict[str, Any]:
    last = last or {}
    rec = {
        "status": status,
        "steps": last.get("step", 0),
        "final_loss": last.get("loss"),
        "seq_length": last.get("seq_length", cfg.data.seq_length),
        "peak_mem_gib": last.get("peak_mem_gib"),
        "peak_reserved_gib": last.get("peak_reserved_gib"),
        "host_rss_gib": last.get("host_rss_gib"),
        "tokens_per_s": last.get("tokens_per_s"),
        "tflops_per_gpu": last.get("tflops_per_gpu"),
        "mfu": last.get("mfu"),
        "step_time_s": last.get("step_time_s"),
        "device_name": last.get("device_name"),
        "gpu_mem_total_gib": last.get("gpu_mem_total_gib"),
        "host_ram_total_gib": last.get("host_ram_total_gib"),
    }
    if last.get("startup"):
        rec["startup"] = last["startup"]  # seconds from the command's start to each phase's end
    if error:
        rec["error"] = error
    return rec


def quiet_collectives():
    """Warnings torch gives for DeepSpeed's collectives that the user cannot act on: the FutureWarnings for the two
    deprecated names its ZeRO collectives call, and barrier()'s "using the device under current context" (each rank
    has set its device, LOCAL_RANK, before the group starts, which is what the warning asks)."""
    for name in ("all_gather_into_tensor", "reduce_scatter_tensor"):
        warnings.filterwarnings("ignore", rf"`torch\.distributed\.{name}` is deprecated", FutureWarning)
    warnings.filterwarnings("ignore", r"barrier\(\): using the device under current context", UserWarning)


def init_distributed(device_type: str, timeout_minutes: int = 30):
    from datetime import timedelta

    import deepspeed
    import torch

    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    quiet_collectives()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # its CPU backend prints "... built successfully" once per rank
        # engine.timeout_minutes: DeepSpeed's default is 10, which followers of torchrun/srun spent waiting for rank 0
        deepspeed.init_distributed(
            dist_backend="nccl" if device_type == "cuda" else "gloo",
            verbose=False,
            timeout=timedelta(minutes=timeout_minutes),
        )
    rest = [line for line in printed.getvalue().splitlines() if not line.endswith(" built successfully")]
    sys.stdout.write("".join(line + "\n" for line in rest))  # anything else it printed, as it was


NO_WORKERS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "plan=true")
"""Command-line words after which the command starts no worker (so no forkserver either)."""


def start_forkserver(argv) -> bool:
    """Start the process the workers will fork from, importing what they need (framework.preload) while this process
    composes and validates; on a machine with idle cores the workers then start without importing anything. A
    command that starts no worker, or a rank torchrun/SLURM started, starts none. Returns whether it started."""
    import multiprocessing
    from multiprocessing import forkserver

    if (
        already_launched()
        or any(a in NO_WORKERS or a.startswith("--cfg") for a in argv)
        or os.environ.get(FORKSERVER_ENV) == "0"
    ):
        return False
    # fork-safe CUDA: torch.cuda.is_available() asks NVML instead of initializing the driver in the server
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    os.environ[OWN_LAUNCH_ENV] = "1"  # the server's children are our own workers (a sitecustomize may look)
    multiprocessing.set_forkserver_preload(["framework.preload"])
    quiet_resource_tracker()
    forkserver.ensure_running()
    return True


def quiet_resource_tracker():
    """Start multiprocessing's resource tracker (the forkserver's children register their semaphores with it) with
    its stderr on /dev/null: it still unlinks what a killed worker leaked, without a warning and a KeyError traceback
    per object after the job's last line."""
    from multiprocessing import resource_tracker

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def adopt_stdio(launcher_pid: int):
    """A worker forked from the forkserver holds the stdout and stderr the server started with; write where the
    launcher's own stdout and stderr point now (the run's train.log copy, a pipe a test reads, a file the user
    redirected to; appended, never over what is there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd in (1, 2):
        try:
            now = os.open(f"/proc/{launcher_pid}/fd/{fd}", os.O_WRONLY | os.O_APPEND)
        except OSError:  # not Linux, or the launcher's fd is closed: keep the server's
            continue
        os.dup2(now, fd)
        os.close(now)


def adopt_env(env: Dict[str, str]):
    """A worker forked from the forkserver holds the environment the server started with, plus what the elastic
    agent set for its rank (RANK, MASTER_ADDR, ...): take every other variable as the launcher has it now (set after
    the server started: the job's id, the validation time, the log file, the socket interfaces...)."""
    preloaded = sys.modules.get("framework.preload")
    if preloaded is None:  # not forked from the server (spawned): the environment is the launcher's already
        return
    started_with = preloaded.ENV
    for key, value in env.items():
        if os.environ.get(key) == started_with.get(key):  # not the agent's
            os.environ[key] = value
    for key in set(started_with) - set(env):
        if os.environ.get(key) == started_with[key]:
            del os.environ[key]


def worker(
    cfg_container: Dict[str, Any],
    run_dir: Optional[str],
    env: Optional[Dict[str, str]] = None,
    launcher_pid: Optional[int] = None,
):
    """Entry point of every rank. Rank 0 writes result.json. Under our own launcher any rank's failure leaves a
    one-line reason in <run_dir>/.failed.rank<N> for the launcher (removed once it wrote result.json); under
    torchrun/SLURM rank 0 records its own failure and torchrun stops the others. `env`: the launcher's environment
    (our own launcher passes it and its pid: see adopt_env, adopt_stdio)."""
    from framework.bytecode import follow

    follow()  # a spawned worker (FRAMEWORK_FORKSERVER=0) writes the bytecode it compiles where the command keeps it
    if env is not None:
        adopt_env(env)
    if launcher_pid is not None and "framework.preload" in sys.modules:  # forked from the forkserver
        adopt_stdio(launcher_pid)
        threads = os.environ.get("OMP_NUM_THREADS")  # the agent's (1 per worker unless the user set it): a forked
        if threads and threads.isdigit():  # process keeps the server's thread pool, whatever the variable says now
            import torch

            torch.set_num_threads(int(threads))
    from omegaconf import OmegaConf
    import torch.distributed as dist

    from framework.graph import build_and_run
    from framework.runtime import device_type

    cfg = OmegaConf.create(cfg_container)
    rank = int(os.environ.get("RANK", 0))
    external = os.environ.get(OWN_LAUNCH_ENV) != "1"
    try:
        init_distributed(device_type(cfg.train.device), cfg.engine.timeout_minutes)
        if external:  # ranks > 0 take rank 0's run directory and its validated, resolved config
            box = [run_dir, cfg_container]
            dist.broadcast_object_list(box, src=0)  # every rank
            run_dir, cfg = box[0], OmegaConf.create(box[1])
        last = build_and_run(cfg, run_dir)
        if rank == 0 and "step" not in last:  # resumed at the last step: no step ran, the record is the metrics'
            from framework.rundir import last_metrics

            last = {**(last_metrics(run_dir) or {}), **last}
        if rank == 0:
            write_json_atomic(os.path.join(run_dir, RESULT), result_record("ok", last, cfg))
    except BaseException as exc:  # noqa: BLE001  (recorded; then the rank exits, so the launcher stops the others)
        status = classify(exc)
        if run_dir and not external:
            rec = {"rank": rank, "status": status, "error": one_line(exc), "time": time.time()}
            write_json_atomic(os.path.join(run_dir, f".failed.rank{rank}"), rec)
        elif run_dir and rank == 0:
            write_json_atomic(os.path.join(run_dir, RESULT), result_record(status, None, cfg, one_line(exc)))
        if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C: the launcher says it once, for the job
            traceback.print_exc()
        if dist.is_initialized() and dist.get_world_size() > 1:
            # Leave at once. Tearing the process group down waits for this rank's collectives in flight, which the
            # other ranks never join (NCCL; experiments/NOTES.md), holding every GPU of the job. The launcher sees
            # the exit and stops the other ranks.
            exit_now(1)
        raise
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int):
    """End this rank now: its helper processes first (DeepSpeed's CPU Adam process under SuperOffload holds the
    optimizer states in host memory), then the process itself, without Python's shutdown."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def reap(job: str):
    """Kill what a job's ranks left running: processes that inherited FRAMEWORK_JOB=<job> from them and are still in
    this process's group (a rank killed by the launcher leaves its helper processes behind, and they would hold
    host memory, a sweep's next run's, and the terminal's output pipe). W&B's service runs in a session of its own
    and finishes by itself; it is not touched."""
    import psutil

    group = os.getpgid(0)
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getpgid(proc.pid) == group and proc.environ().get(JOB_ENV) == job:
                proc.kill()
        except (psutil.Error, OSError):
            pass  # gone already, or not ours to read


STORE_ARGS = (
    "host_name",
    "port",
    "world_size",
    "is_master",
    "timeout",
    "wait_for_workers",
    "multi_tenant",
    "master_listen_fd",
    "use_libuv",
)


def loopback_tcp_store():
    """torch's TCPStore, except that a server listens on 127.0.0.1 only. The store has no authentication and the
    launcher unpickles rendezvous state from it, but torch's server binds every interface (`::`); given a socket
    already bound to loopback (master_listen_fd), it listens there instead."""
    from torch.distributed import TCPStore

    class LoopbackTCPStore(TCPStore):
        def __init__(self, *args, **kw):
            kw.update(zip(STORE_ARGS, args))
            if kw.get("is_master") and kw.get("master_listen_fd") is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", kw.get("port") or 0))
                sock.listen(128)
                kw.update(host_name="127.0.0.1", port=sock.getsockname()[1], master_listen_fd=sock.detach())
            super().__init__(**kw)

    return LoopbackTCPStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def already_launched() -> bool:
    """True when torchrun or SLURM started this process as one rank of a job."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list in its compressed form: "gpu[07-09,12],cpu1" -> "gpu07",
    "rack[1-2]-n[01-04]" -> "rack1-n01" (the first entry, each bracket at its first value, zero padding kept)."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first entry: up to the first comma outside brackets
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            end = i
            break
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], nodelist[:end])


def adopt_slurm_env():
    """Under `srun` (one task per GPU) map SLURM's variables to torch's, when torchrun did not set them. Every task
    derives the same rendezvous: the first host of SLURM_JOB_NODELIST (the node rank 0 runs on with srun's block
    distribution) and a port from the job id (two jobs sharing a node get different ports); a MASTER_ADDR or
    MASTER_PORT already set wins."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    os.environ.setdefault("MASTER_ADDR", first_host(nodes) if nodes else "127.0.0.1")
    job = os.environ.get("SLURM_JOB_ID")  # one port per SLURM job: two jobs sharing a node collided on 29500
    os.environ.setdefault("MASTER_PORT", str(15000 + int(job) % 20000 if job else 29500))


def collect_failure(run_dir: str) -> Optional[Dict[str, Any]]:
    """The earliest worker failure (the cause; later ones are usually ranks killed because of it)."""
    recs = []
    for name in os.listdir(run_dir):
        if name.startswith(".failed.rank"):
            with open(os.path.join(run_dir, name)) as f:
                recs.append(json.load(f))
            os.remove(os.path.join(run_dir, name))
    if not recs:
        return None
    return min(recs, key=lambda r: (r["status"] != "oom", r["time"]))  # an OOM anywhere explains the rest


def start_method() -> str:
    """forkserver when start_forkserver started one in this process (the workers fork from it), else spawn."""
    from multiprocessing import forkserver

    running = getattr(forkserver._forkserver, "_forkserver_pid", None) is not None  # noqa: SLF001
    return "forkserver" if running else "spawn"


def launch(cfg, run_dir: str, nproc: int, resume_dir: Optional[str] = None) -> Dict[str, Any]:
    """Run the job on `nproc` local worker processes and return its result record (also in result.json).
    `resume_dir`: the checkpoint validation checked (checksums included); the workers load that one."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # plain values: workers need no schema
    if resume_dir:
        container["checkpoint"]["resume"] = resume_dir
    path = os.path.join(run_dir, RESULT)
    if already_launched():
        worker(container, run_dir)
        return json.load(open(path)) if os.path.exists(path) else {}

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

    # one node: every socket of the job listens on loopback only (the stores here, the workers' MASTER_ADDR, gloo's
    # and NCCL's bootstrap sockets through the interface named below)
    lc = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex[:8],
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{free_port()}",
        max_restarts=0,
        monitor_interval=0.2,
        start_method=start_method(),
        local_addr="127.0.0.1",
    )
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
    stores = dist.TCPStore, c10d_rendezvous_backend.TCPStore
    dist.TCPStore = c10d_rendezvous_backend.TCPStore = loopback_tcp_store()  # restored below
    os.environ[OWN_LAUNCH_ENV] = "1"  # inherited by the workers
    os.environ[JOB_ENV] = lc.run_id  # and by everything they start: what reap() cleans up
    # long sequences fragment the caching allocator; ALST's recipes all set this (the user's own setting wins)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    error = signal = None
    try:
        elastic_launch(lc, worker)(container, run_dir, dict(os.environ), os.getpid())
    except ChildFailedError as exc:
        error = exc
    except SignalException as exc:  # the launcher got SIGTERM, SIGINT or SIGHUP; torch's agent stopped the workers
        signal = exc.sigval
    finally:
        dist.TCPStore, c10d_rendezvous_backend.TCPStore = stores
        reap(lc.run_id)
    failure = collect_failure(run_dir)
    if signal is not None:  # the workers that died of it wrote no reason of their own worth more than this
        failure = {
            "status": "failed",
            "error": f"interrupted: stopped by {signal.name}",
        }  # ok, oom or failed: no fourth status
    elif error is None and failure is None and os.path.exists(path):
        return json.load(open(path))
    if failure is None:  # killed from outside (host OOM killer: SIGKILL) before it could say why
        text = str(error) if error else "a worker exited without a result"
        status = "oom" if "Signal 9" in text or "SIGKILL" in text else "failed"
        reason = (
            "a worker was killed by SIGKILL (host out of memory?)" if status == "oom" else one_line(Exception(text))
        )
        failure = {"status": status, "error": reason}
    from framework.rundir import last_metrics

    rec = result_record(failure["status"], last_metrics(run_dir), cfg, error=failure["error"])
    write_json_atomic(path, rec)
    if signal is not None:
        raise Interrupted(run_dir, signal)
    return rec
