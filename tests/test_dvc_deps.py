"""Every mlrisk module a stage imports (at module level or inside a function, directly or through
other mlrisk modules) is a dependency of that stage in dvc.yaml, so a code change re-runs it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SRC = ROOT / "src"


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """mlrisk modules named by every import statement in ``path`` (including lazy ones)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "mlrisk"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlrisk" and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return out


def imported_files(script: Path) -> set[Path]:
    """Source files of the mlrisk modules ``script`` reaches, with their packages' __init__ files."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        for mod in _imports(f):
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                mf = _module_file(".".join(parts[:i]))
                if mf and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covered(f: Path, deps: list[str]) -> bool:
    rel = f.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def _is_code(f: Path) -> bool:
    """False for a package ``__init__.py`` that holds only its docstring (nothing that can change results)."""
    body = ast.parse(f.read_text()).body
    return not (f.name == "__init__.py" and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body))


def uncovered(stage: dict) -> list[str]:
    """Imported mlrisk source files that none of the stage's deps covers."""
    script = ROOT / stage["cmd"].split()[1]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    return sorted(f.relative_to(ROOT).as_posix() for f in imported_files(script) if _is_code(f) and not _covered(f, deps))


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_cover_every_imported_module(name):
    stage = _stages()[name]
    assert stage["cmd"].split()[0] == "python" and stage["cmd"].split()[1] in [d for d in stage["deps"] if isinstance(d, str)]
    missing = uncovered(stage)
    assert not missing, f"dvc.yaml stage {name!r} imports {missing} but does not list them in deps"


def test_the_check_fails_when_a_dependency_is_dropped():
    stage = dict(_stages()["backtest"])
    kept = [d for d in stage["deps"] if "engine" not in str(d) and d != "src/mlrisk/backtest"]
    assert uncovered({**stage, "deps": kept}), "dropping the engine from the backtest deps must be caught"
