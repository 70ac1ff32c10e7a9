"""Checkpoints: DeepSpeed ZeRO checkpoints under <run_dir>/checkpoints/step_N, complete or invisible.

A save writes every rank's files, fsyncs them, waits for every rank (a barrier), hashes them (each rank a share of the
files, while the page cache still holds them) and only then does rank 0 write `manifest.json` (each file with its size
and checksum, the step, and the settings the data order and the LR schedule depend on), atomically and last. A
checkpoint is complete when its manifest exists, names the step of its folder, and every file it lists has its size
and (checkpoint.verify_checksums, read on resume) its checksum; `checkpoint.resume=latest` takes the newest complete one
and never reads DeepSpeed's own `latest` file (rank 0 writes that as soon as its own files are saved, before the other
ranks finish).
"""

import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

from framework.files import write_json_atomic
from framework.log import get_logger

MANIFEST = "manifest.json"
CHECKSUM = "xxh3_128"
"""The files' hash: xxHash's XXH3, 128 bits (about 3 GB/s on one core; it finds corruption, not forgery)."""
STEP_DIR = re.compile(r"^step_(\d+)$")
log = get_logger(__name__)


DATA_NOT_IN_TOKENS = ("num_proc", "num_workers", "cache_dir", "eval_path")
"""data keys that change how fast or where the rows are made, never which tokens in which order (every other data key
is recorded: a new one is refused on resume until it is listed here)."""
SYNTHETIC_ONLY = ("num_samples", "lengths")
HF_ONLY = (
    "path",
    "text_field",
    "tokenizer",
    "truncation",
    "pad_to_seq_length",
    "streaming",
    "split",
    "chat_template",
    "add_eos",
    "shuffle_buffer",
)


def run_settings(*, parallelism, data, train, optim, tokenizer: Optional[str], world: int) -> Dict[str, Any]:
    """What the order of the rows, the tokens of each batch and the LR schedule depend on, by config key (plain JSON
    values): the mesh as built from the sizes and the world (dp_shard_size=-1 resolved), every data key but
    DATA_NOT_IN_TOKENS (and the other source's keys), the step loop's batch and seed, the schedule. A resume that
    changes one of them silently skips or repeats data, or makes the LR jump."""
    from dataclasses import fields

    from framework.data.config import DataConfig
    from framework.parallelism.mesh import resolve_sizes

    replicate, shard, cp, sp = resolve_sizes(parallelism, world)
    out = {
        "parallelism.sp_size": sp,
        "parallelism.cp_size": cp,
        "parallelism.dp_replicate_size": replicate,
        "parallelism.dp_shard_size": shard,
    }
    from framework.data.config import reads_corpus

    hf = reads_corpus(data)
    skip = set(DATA_NOT_IN_TOKENS) | set(SYNTHETIC_ONLY if hf else HF_ONLY)
    for f in fields(DataConfig):
        if f.name.startswith("_") or f.name in skip:
            continue
        value = tokenizer if f.name == "tokenizer" else getattr(data, f.name)
        out[f"data.{f.name}"] = plain(value)
    out.update(
        {
            "train.seed": train.seed,
            "train.micro_batch_size": train.micro_batch_size,
            "train.gradient_accumulation_steps": train.gradient_accumulation_steps,
            "train.max_steps": train.max_steps,
            "optim.schedule": str(optim.schedule),
            "optim.lr": optim.lr,
            "optim.warmup_steps": optim.warmup_steps,
            "optim.min_lr_ratio": optim.min_lr_ratio,
        }
    )
    return out


def plain(value):
    """A config value as JSON keeps it (an enum as its string, a list config as a list)."""
    from omegaconf import ListConfig

    if isinstance(value, (ListConfig, list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def changed_settings(saved: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    """'key: saved -> now' for every setting that differs (keys the checkpoint did not record are not compared)."""
    return [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now if k in saved and saved[k] != now[k]]


def read_manifest(step_dir: str) -> Dict[str, Any]:
    with open(os.path.join(step_dir, MANIFEST)) as f:
        return json.load(f)


def checksum(path: str) -> str:
    """The file's XXH3-128 hex digest, read in 8 MiB pieces."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while piece := f.read(8 << 20):
            h.update(piece)
    return h.hexdigest()


def incomplete_reason(step_dir: str, verify: bool = False) -> Optional[str]:
    """None when the manifest names this folder's step and every file it lists is there with its size (and, with
    `verify`, its checksum: every byte is read); else why the checkpoint is not complete."""
    if not os.path.isdir(step_dir):
        return "its folder is gone"
    if not os.path.exists(os.path.join(step_dir, MANIFEST)):
        return f"no {MANIFEST} (its save did not finish)"
    try:
        manifest = read_manifest(step_dir)
        files, step = manifest["files"], int(manifest["step"])
        sums = manifest.get("checksums", {}) if verify else {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable {MANIFEST} ({type(exc).__name__})"
    named = STEP_DIR.match(os.path.basename(os.path.normpath(step_dir)))
    if named and int(named.group(1)) != step:
        return f"its {MANIFEST} says step {step}, its folder step {named.group(1)}"
    for rel, size in files.items():
        path = os.path.join(step_dir, rel)
        if not os.path.isfile(path):
            return f"{rel} is missing"
        if os.path.getsize(path) != size:
            return f"{rel} has {os.path.getsize(path)} bytes, its manifest says {size}"
    for rel, digest in sums.items():
        if checksum(os.path.join(step_dir, rel)) != digest:
            return f"{rel} does not match its checksum (its bytes changed after the save)"
    return None


def step_dirs(root: str) -> List[Tuple[int, str]]:
    """(step, name) of every step_N under `root`, and of the one DeepSpeed's `latest` file names (its folder may be
    gone), newest first."""
    names = set(os.listdir(root)) if os.path.isdir(root) else set()
    try:
        with open(os.path.join(root, "latest")) as f:
            names.add(f.read().strip())
    except OSError:
        pass
    found = [(int(m.group(1)), n) for n in names if (m := STEP_DIR.match(n))]
    return sorted(found, reverse=True)


def newest_complete(root: str, verify: bool = False) -> Tuple[Optional[str], List[str]]:
    """The newest complete checkpoint under `root` (None if there is none), and 'step_N: why' for each newer one
    skipped (`verify`: checksums too)."""
    skipped = []
    for _, name in step_dirs(root):
        why = incomplete_reason(os.path.join(root, name), verify)
        if why is None:
            return os.path.join(root, name), skipped
        skipped.append(f"{name}: {why}")
    return None, skipped


def is_checkpoints_root(path: str) -> bool:
    """A checkpoints/ folder (holds step_N folders or DeepSpeed's `latest`), as opposed to one checkpoint."""
    return os.path.isdir(path) and bool(step_dirs(path)) and not os.path.exists(os.path.join(path, MANIFEST))


def resolve(resume: Optional[str], run_dir: str, verify: bool = False) -> Tuple[Optional[str], List[str]]:
    """The checkpoint folder checkpoint.resume names (None: start fresh, or nothing complete found), and the newer ones
    skipped with the reason. `latest`: the newest complete one of <run_dir>/checkpoints; a checkpoints/ folder: its
    newest complete one; a step_N folder: itself, when complete. `verify`: compare every file with its checksum."""
    if not resume:
        return None, []
    if resume == "latest":
        return newest_complete(os.path.join(run_dir, "checkpoints"), verify)
    path = os.path.abspath(resume)
    if os.path.isdir(os.path.join(path, "checkpoints")) and not os.path.exists(os.path.join(path, MANIFEST)):
        path = os.path.join(path, "checkpoints")  # a run directory: its newest complete checkpoint
    if is_checkpoints_root(path):
        return newest_complete(path, verify)
    why = incomplete_reason(path, verify)
    return (path, []) if why is None else (None, [f"{os.path.basename(path)}: {why}"])


def fsync_tree(path: str):
    """Flush every file under `path` and the folders themselves to disk (a crash after this loses none of them)."""
    for folder, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def fsync_dir(path: str):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def listed_files(step_dir: str) -> List[str]:
    """Every file of a checkpoint folder but its manifest (and a manifest being written), relative, sorted."""
    out = []
    for folder, _, names in os.walk(step_dir):
        for name in names:
            if name != MANIFEST and not name.startswith(f"{MANIFEST}.tmp"):
                out.append(os.path.relpath(os.path.join(folder, name), step_dir))
    return sorted(out)


def write_manifest(step_dir: str, step: int, settings: Dict[str, Any], checksums: Optional[Dict[str, str]] = None):
    """Write step_dir/manifest.json listing every file under step_dir with its size (and checksum, when given):
    atomically (a temporary file renamed), fsynced, and after every file it lists is on disk."""
    files = {rel: os.path.getsize(os.path.join(step_dir, rel)) for rel in listed_files(step_dir)}
    manifest = {"step": step, "files": files, "settings": settings}
    if checksums is not None:
        manifest.update(checksum=CHECKSUM, checksums=checksums)
    write_json_atomic(os.path.join(step_dir, MANIFEST), manifest, indent=1, fsync=True)
    fsync_dir(step_dir)


def remove_checkpoint(step_dir: str):
    """Delete a checkpoint, its manifest first: a crash midway leaves an incomplete (invisible) one, never a
    complete-looking one with files missing."""
    try:
        os.remove(os.path.join(step_dir, MANIFEST))
    except FileNotFoundError:
        pass
    shutil.rmtree(step_dir, ignore_errors=True)


def prune(root: str, keep_last: int) -> List[str]:
    """Keep the newest `keep_last` complete checkpoints (0: keep all); delete every step_N folder older than the
    oldest one kept (complete or torn). Returns the names deleted."""
    if keep_last <= 0:
        return []
    kept, deleted = 0, []
    for _, name in step_dirs(root):
        path = os.path.join(root, name)
        if kept >= keep_last and os.path.isdir(path):
            remove_checkpoint(path)
            deleted.append(name)
        elif incomplete_reason(path) is None:
            kept += 1
    return deleted


def remove_newer(root: str, step: int) -> List[str]:
    """Delete the step_N folders of `root` newer than `step`: a run resumed from `step` writes them again, and until
    it does, an older branch's checkpoint must not be what resume=latest finds."""
    deleted = []
    for n, name in step_dirs(root):
        if n > step and os.path.isdir(os.path.join(root, name)):
            remove_checkpoint(os.path.join(root, name))
            deleted.append(name)
    return deleted


def save_checkpoint(ds_engine, run_dir: str, step: int, *, settings: Dict[str, Any], keep_last: int = 0):
    """Save a ZeRO checkpoint under <run_dir>/checkpoints/step_<step>, complete or invisible. All ranks must call
    this (DeepSpeed's save and the barrier are collectives)."""
    import torch.distributed as dist

    root = os.path.join(run_dir, "checkpoints")
    tag = f"step_{step}"
    dtype = str(next(ds_engine.module.parameters()).dtype)  # framework.export casts the fp32 masters back to it
    ds_engine.save_checkpoint(root, tag=tag, client_state={"step": step, "dtype": dtype})
    # each rank flushes what it wrote (it lists the folder after its own save returned: its files are whole); on a
    # shared filesystem another node's fsync would not flush this node's pages
    fsync_tree(os.path.join(root, tag))
    dist.barrier()  # every rank: all files of the checkpoint are on disk before the manifest says so
    step_dir = os.path.join(root, tag)
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {rel: checksum(os.path.join(step_dir, rel)) for rel in listed_files(step_dir)[rank::world]}
    shares = [None] * world
    dist.all_gather_object(shares, mine)  # every rank: each hashed a share of the files (read back from page cache)
    if rank == 0:
        write_manifest(step_dir, step, settings, {k: v for share in shares for k, v in share.items()})
        for name in prune(root, keep_last):
            log.info(f"checkpoint.keep_last={keep_last}: deleted checkpoint {name}")


def load_checkpoint(ds_engine, resume: Optional[str], run_dir: str) -> int:
    """Load the checkpoint checkpoint.resume names into the engine; the step it was saved at (0: none, start fresh).
    Validation has checked that it exists and is complete. All ranks must call this."""
    step_dir, _ = resolve(resume, run_dir)  # the launcher said which it skipped
    if step_dir is None:
        return 0
    _, client = ds_engine.load_checkpoint(os.path.dirname(step_dir), tag=os.path.basename(step_dir))
    step = int(client["step"])
    listed = int(read_manifest(step_dir)["step"])
    if step != listed:  # validation checked the manifest against the folder's name; this checks DeepSpeed's own
        raise RuntimeError(
            f"{step_dir}: DeepSpeed's client state says step {step}, its {MANIFEST} step {listed}: "
            "the checkpoint was altered; resume from another one"
        )
    log.info(f"resumed from {step_dir} at step {step}")
    return step
