"""What the command line tells a user before anything runs: the `--help` page (conf/hydra/help/framework.yaml calls
`${framework_help:<part>}` for its parts), and "did you mean" for a key that is not in the schema.

Both read the schema (framework/config.py) and the dataclasses' field docstrings, so they cannot drift from them.
"""

import ast
import dataclasses
import difflib
import inspect
import os
import textwrap
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

MAIN_KEYS = (
    "train.max_steps",
    "train.micro_batch_size",
    "train.gradient_accumulation_steps",
    "train.device",
    "data.path",
    "data.seq_length",
    "data.packing",
    "model.name_or_path",
    "model.dtype",
    "model.lora.r",
    "parallelism.sp_size",
    "parallelism.cp_size",
    "parallelism.dp_shard_size",
    "engine.zero_stage",
    "engine.offload_optimizer",
    "optim.lr",
    "optim.schedule",
    "optim.warmup_steps",
    "checkpoint.every",
    "checkpoint.every_minutes",
    "checkpoint.resume",
    "checkpoint.export_merged",
    "eval.every",
    "plan",
    "hardware.gpu_mem_gib",
    "hardware.host_ram_gib",
)
"""The keys `--help` lists (the public contract's most used); every other key is in `--cfg job` and in
framework/<group>/config.py."""


def field_docs(cls) -> Dict[str, str]:
    """A dataclass's field docstrings (the string literal under each field), by field name."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@lru_cache(maxsize=None)
def schema_fields() -> Dict[str, Tuple[object, str]]:
    """Every key of the schema ('optim.lr', 'model.lora.r', 'plan'): (its default, its docstring)."""
    from framework.config import Config

    out: Dict[str, Tuple[object, str]] = {}

    def walk(cls, prefix: str):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name.startswith("_"):
                continue
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(f.type):
                out[key] = (None, docs.get(f.name, ""))
                walk(f.type, key + ".")
                continue
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            out[key] = (getattr(default, "value", default), docs.get(f.name, ""))

    walk(Config, "")
    return out


def open_keys() -> Tuple[str, ...]:
    """Keys whose value is a free-form mapping (model.arch, engine.deepspeed): any key under them is allowed."""
    from framework.config import Config

    out = []

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type):
                walk(f.type, f"{prefix}{f.name}.")
            elif "Dict" in str(f.type) or f.type is dict:
                out.append(f"{prefix}{f.name}")

    walk(Config, "")
    return tuple(out)


def groups(conf_dir: str) -> Dict[str, List[str]]:
    """Each config group under conf/ and its options (file names), experiment included."""
    out = {}
    for name in sorted(os.listdir(conf_dir)):
        path = os.path.join(conf_dir, name)
        if os.path.isdir(path) and name != "hydra":
            out[name] = sorted(f[:-5] for f in os.listdir(path) if f.endswith(".yaml"))
    return out


def unknown_key(overrides: List[str], conf_dir: str) -> Optional[str]:
    """The one-line error for the first command-line override whose key is not in the schema (nor a group), with the
    nearest valid key; None when every key is known. `+key=...` is checked too (Hydra adds any key it is given)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    fields = schema_fields()
    opened = open_keys()
    known_groups = groups(conf_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001  (a syntax error: Hydra reports it with its own message)
        return None
    for o in parsed:
        key = o.key_or_group
        if o.package or key.startswith("hydra") or key.split("/")[0] == "hydra" or "/" in key:
            continue
        if key in fields or key in known_groups or any(key.startswith(k + ".") for k in opened):
            continue
        candidates = list(fields) + list(known_groups)
        near = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if not near:  # a typo in the last part: compare it with its group's keys
            group, _, leaf = key.rpartition(".")
            siblings = [k for k in fields if k.rpartition(".")[0] == group]
            near = [
                f"{group}.{m}"
                for m in difflib.get_close_matches(leaf, [s.rpartition(".")[2] for s in siblings], n=1, cutoff=0.5)
            ]
        hint = f"did you mean `{near[0]}`?" if near else "see `framework --help` for the keys"
        value = o.value() if o.value_type is not None else None
        return (
            f"config error: {key}={value!r}: no such config key. Fix: {hint} (every key and its docstring: "
            f"framework/<group>/config.py; `framework --cfg job` prints them all)"
        )
    return None


# ------------------------------------------------------------------------------------------------- the help page
def _cut(text: str, width: int) -> str:
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def experiments_text(conf_dir: str) -> str:
    lines = []
    for name in groups(conf_dir).get("experiment", []):
        with open(os.path.join(conf_dir, "experiment", f"{name}.yaml")) as f:
            comments = [ln[1:].strip() for ln in f.read().splitlines() if ln.startswith("#") and "@package" not in ln]
        about = comments[0] if comments else ""
        lines.append(f"  {name:<20} {_cut(about, 90)}")
    return "\n".join(lines)


def groups_text(conf_dir: str) -> str:
    defaults = {}
    with open(os.path.join(conf_dir, "config.yaml")) as f:
        for ln in f.read().splitlines():
            s = ln.strip()
            if s.startswith("- ") and ":" in s:
                g, _, opt = s[2:].partition(":")
                defaults[g.strip()] = opt.strip()
    lines = []
    for g, options in groups(conf_dir).items():
        if g == "experiment":
            continue
        shown = ", ".join(f"{o} (default)" if defaults.get(g) == o else o for o in options)
        lines.append(f"  {g + '=':<14} {shown}")
    return "\n".join(lines)


def keys_text() -> str:
    fields = schema_fields()
    lines = []
    for key in MAIN_KEYS:
        default, doc = fields[key]
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        lines.append(f"  {key + '=' + shown:<38} {_cut(doc, 80)}")
    return "\n".join(lines)


def help_part(part: str) -> str:
    """`${framework_help:<part>}` in conf/hydra/help/framework.yaml: experiments, groups or keys."""
    conf_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")  # framework/conf, as the CLI's

    text = {
        "experiments": lambda: experiments_text(conf_dir),
        "groups": lambda: groups_text(conf_dir),
        "keys": keys_text,
    }[part]()
    return text.replace("$", "$$")  # the page is a string.Template: $ is Hydra's
