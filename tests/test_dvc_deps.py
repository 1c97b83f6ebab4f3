"""Each stage's mlrisk source deps in dvc.yaml are exactly the files it imports (at module level or
inside a function, directly or through other mlrisk modules; :func:`mlrisk.code_deps.imported_files`):
none missing, so a code change re-runs the stage, and none extra, so a change elsewhere does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mlrisk.code_deps import imported_files

SRC = ROOT / "src"
PKG = SRC / "mlrisk"


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def _listed_sources(deps: list[str]) -> set[str]:
    """The mlrisk source files the deps name (a folder names every .py file under it; a data file
    shipped in the package, e.g. a .json snapshot a stage reads, is no source file)."""
    out: set[str] = set()
    for d in deps:
        path = ROOT / d.rstrip("/")
        if (path == PKG or PKG in path.parents) and (path.is_dir() or path.suffix == ".py"):
            out |= {f.relative_to(ROOT).as_posix() for f in path.rglob("*.py")} if path.is_dir() else {d}
    return out


def mismatch(stage: dict) -> tuple[list[str], list[str]]:
    """(imported but not listed, listed but not imported) mlrisk source files of a stage."""
    imported = {f.relative_to(ROOT).as_posix() for f in imported_files(ROOT / stage["cmd"].split()[1], SRC)}
    listed = _listed_sources(_deps(stage))
    return sorted(imported - listed), sorted(listed - imported)


@pytest.mark.parametrize("name", list(_stages()))
def test_stage_deps_are_exactly_the_imported_modules(name):
    stage = _stages()[name]
    assert stage["cmd"].split()[0] == "python" and stage["cmd"].split()[1] in _deps(stage)
    missing, extra = mismatch(stage)
    assert not missing, f"dvc.yaml stage {name!r} imports {missing} but does not list them in deps"
    assert not extra, f"dvc.yaml stage {name!r} lists {extra} in deps but does not import them"


def test_the_check_fails_when_a_dependency_is_dropped_or_added():
    stage = _stages()["backtest"]
    dropped = [d for d in _deps(stage) if "engine" not in d]
    assert mismatch({**stage, "deps": dropped})[0] == ["src/mlrisk/backtest/engine.py"]
    folder = [*_deps(stage), "src/mlrisk/report"]  # a folder of modules the backtest never imports
    assert "src/mlrisk/report/dashboard.py" in mismatch({**stage, "deps": folder})[1]
    assert mismatch({**stage, "deps": [*_deps(stage), "src/mlrisk/live/account.py"]})[1] == ["src/mlrisk/live/account.py"]


def test_lazy_imports_count_and_type_checking_imports_do_not(tmp_path: Path):
    pkg = tmp_path / "src" / "mlrisk"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""docstring only"""\n')
    (pkg / "sub" / "__init__.py").write_text("X = 1\n")
    for name in ("a", "b", "c", "d"):
        (pkg / "sub" / f"{name}.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from mlrisk.sub import b\n")
    script = tmp_path / "script.py"
    script.write_text("from typing import TYPE_CHECKING\nimport mlrisk.sub.a\nif TYPE_CHECKING:\n    from mlrisk.sub import c\n"
                      "def f():\n    from mlrisk.sub.d import thing\n")
    got = {f.relative_to(pkg).as_posix() for f in imported_files(script, tmp_path / "src")}
    assert got == {"sub/__init__.py", "sub/a.py", "sub/b.py", "sub/d.py"}  # no c (annotations), no docstring-only __init__
