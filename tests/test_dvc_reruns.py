"""Editing code re-runs only the stages that import it: the report's code re-runs only the report,
the live bot's code no stage, a section's schema only check_params and the stages that read that
section. Read from `dvc status` in a throw-away copy of the repository (code and pipeline files
only: no data or outputs are needed, the changed dependencies are compared before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT


def _dvc_status(repo: Path) -> dict[str, set[str]]:
    """Stage -> the dependencies `dvc status` says changed since dvc.lock."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    r = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out: dict[str, set[str]] = {}
    for stage, changes in json.loads(r.stdout).items():
        for change in changes:
            if isinstance(change, dict) and "changed deps" in change:
                out[stage] = {f"{path} {what}" for path, what in change["changed deps"].items()}
    return out


def _lock_matching_the_code(repo: Path) -> None:
    """Make dvc.lock record every file dependency as it is in this copy, so only later edits show."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for name, stage in stages.items():
        locked = {d["path"]: d for d in lock["stages"].get(name, {}).get("deps", [])}
        deps = []
        for path in (d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]):
            f = repo / path
            if f.is_file():
                deps.append({"path": path, "hash": "md5", "md5": hashlib.md5(f.read_bytes()).hexdigest(),
                             "size": f.stat().st_size})
            elif path in locked:
                deps.append(locked[path])
        lock["stages"].setdefault(name, {"cmd": stage["cmd"]})["deps"] = deps
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        if f.startswith(("src/", "stages/", ".dvc/")) or f in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
            if (ROOT / f).is_file():
                (repo / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, repo / f)
    _lock_matching_the_code(repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


@pytest.fixture(scope="module")
def baseline(repo: Path) -> dict[str, set[str]]:
    """`dvc status` of the unedited copy (every edit below is undone)."""
    return _dvc_status(repo)


def _newly_changed(repo: Path, before: dict[str, set[str]], rel: str, old: str | None = None,
                   new: str | None = None) -> set[str]:
    """The stages whose dependencies change when ``rel`` is edited (a comment appended, or ``old`` -> ``new``)."""
    f = repo / rel
    text = f.read_text()
    try:
        if old is None:
            f.write_text(text + "\n# edited\n")
        else:
            assert text.count(old) == 1
            f.write_text(text.replace(old, new))
        after = _dvc_status(repo)
    finally:
        f.write_text(text)
    return {stage for stage, deps in after.items() if deps - before.get(stage, set())}


def test_editing_the_report_re_runs_only_the_report(repo: Path, baseline: dict):
    assert _newly_changed(repo, baseline, "src/mlrisk/report/dashboard.py") == {"report"}


def test_editing_the_live_bot_re_runs_nothing(repo: Path, baseline: dict):
    assert _newly_changed(repo, baseline, "src/mlrisk/live/loop.py") == set()
    assert _newly_changed(repo, baseline, "src/mlrisk/live/sim_account.py") == set()


def test_editing_the_backtest_section_re_runs_only_what_reads_it(repo: Path, baseline: dict):
    changed = _newly_changed(repo, baseline, "src/mlrisk/config/backtest.py", "backtest.sweep.{key} is empty",
                             "backtest.sweep.{key} has no values")
    assert changed == {"check_params", "backtest", "report"}


def test_editing_a_feature_re_runs_every_stage_that_computes_or_reads_features(repo: Path, baseline: dict):
    changed = _newly_changed(repo, baseline, "src/mlrisk/features.py")
    assert {"preprocess", "train", "evaluate"} <= changed  # the check can fail: a dropped dep would show here
