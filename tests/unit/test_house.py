"""The layout a reader relies on: every config group under conf/ is a subpackage of framework/ with its config
dataclass, and no module of framework/ takes part in an import cycle (function-level imports included)."""

import ast
import dataclasses
import importlib
import pathlib

import pytest

from helpers import CONF_DIR, REPO

PACKAGE = pathlib.Path(REPO) / "framework"
NOT_COMPONENTS = {
    "experiment": "its files override the other groups; it builds nothing of its own",
    "hydra": "Hydra's own groups (sweeper, launcher)",
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "conf" not in p.relative_to(PACKAGE).parts}


def imports_of(name: str) -> set:
    """The project modules `name` imports anywhere in its source (module level, functions, methods)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_function_level_imports():
    assert "framework.data.hf" in GRAPH["framework.data.loader"]  # imported inside the hf builder only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_framework():
    assert len(MODULES) > 30, sorted(MODULES)
    assert cycles(GRAPH) == []


def test_runtime_helpers_are_a_leaf_and_only_the_cli_runs_validation():
    assert GRAPH["framework.runtime"] == {"framework.env"} and GRAPH["framework.errors"] == set()
    assert GRAPH["framework.env"] == set() and GRAPH["framework.files"] == set()
    assert GRAPH["framework.log"] == set()
    assert [m for m in GRAPH if "framework.validate" in GRAPH[m]] == ["framework.cli"]


GROUPS = sorted(p.name for p in pathlib.Path(CONF_DIR).iterdir() if p.is_dir() and p.name not in NOT_COMPONENTS)


def test_conf_groups_were_found():
    assert GROUPS == [
        "attention",
        "checkpoint",
        "data",
        "engine",
        "eval",
        "loss",
        "model",
        "optim",
        "parallelism",
        "tracker",
        "train",
    ]


@pytest.mark.parametrize("group", GROUPS)
def test_each_conf_group_has_its_subpackage_and_config_dataclass(group):
    """conf/<group>/ ↔ framework/<group>/ ↔ <Group>Config in framework/<group>/config.py ↔ the schema's field."""
    from framework.config import Config

    assert (PACKAGE / group / "__init__.py").exists()
    cls = getattr(importlib.import_module(f"framework.{group}.config"), f"{group.capitalize()}Config")
    assert dataclasses.is_dataclass(cls)
    assert {f.name: f.type for f in dataclasses.fields(Config)}[group] is cls
    target = cls._target_
    assert target.startswith(f"framework.{group}."), target  # its builder lives in the group's subpackage too
    module, _, attr = target.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))


OPTIONS = sorted((g, p.stem) for g in GROUPS for p in (pathlib.Path(CONF_DIR) / g).glob("*.yaml"))


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_each_option_names_its_builder_and_hydra_can_call_it(group, option):
    """Each option of a group picks its code by `_target_` alone (no `kind`/`source` switch): composed, its
    `_target_` is a callable of framework/<group>/ that hydra.utils.instantiate calls (here with _partial_, since
    the runtime objects are the graph's)."""
    import functools

    from hydra.utils import instantiate

    from helpers import compose

    node = compose([f"{group}={option}"])[group]
    assert node._target_.startswith(f"framework.{group}."), node._target_
    built = instantiate(node, _partial_=True, _recursive_=False)
    assert isinstance(built, functools.partial) and callable(built.func)
    assert not {"kind", "source"} & set(node.keys())  # the string switches are gone


def test_no_group_picks_its_code_by_a_string_field():
    """The graph builds every group through hydra.utils.instantiate; nothing calls a builder by hand."""
    text = (PACKAGE / "graph.py").read_text()
    assert "get_method" not in text and "hydra_instantiate(node" in text


SOURCES = {
    **{name: path for name, path in MODULES.items()},
    **{module_name(p): p for p in (pathlib.Path(REPO) / "hydra_plugins").rglob("*.py")},
}
PRINTS_ALLOWED = {"framework.tracker.console": "the step line and its progress bar, drawn in place on a terminal"}


def calls(tree, name: str) -> list:
    """The calls of `name` (a plain name like print, or a dotted one like os.replace) in `tree`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            spelled = (
                f.id
                if isinstance(f, ast.Name)
                else (
                    f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                )
            )
            if spelled == name:
                out.append(node)
    return out


def test_modules_log_instead_of_printing():
    """framework.log's logger says what a module has to say: rank 0 only, and also in the job's log file."""
    printing = [
        name
        for name, path in SOURCES.items()
        if name not in PRINTS_ALLOWED and calls(ast.parse(path.read_text()), "print")
    ]
    assert printing == [], "use `log = framework.log.get_logger(__name__)` instead of print()"


def opens_for_writing(node: ast.Call) -> bool:
    mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax")


def test_no_module_writes_a_file_then_renames_it_by_hand():
    """A file written whole or not at all goes through framework.files.atomic_write (or write_json_atomic): no
    function opens a file for writing and calls os.replace itself."""
    by_hand = []
    for name, path in SOURCES.items():
        if name == "framework.files":
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                and calls(fn, "os.replace")
                and any(opens_for_writing(c) for c in calls(fn, "open") + calls(fn, "os.fdopen"))
            ):
                by_hand.append(f"{name}.{fn.name}")
    assert by_hand == [], "use framework.files.atomic_write"


def test_framework_environment_names_are_spelled_once():
    """Every FRAMEWORK_* variable is a constant of framework.env; modules use the constant."""
    spelled = [
        name
        for name, path in SOURCES.items()
        if name != "framework.env"
        and any(
            isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("FRAMEWORK_")
            for n in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert spelled == [], "name the variable in framework/env.py and import it"
