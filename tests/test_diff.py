"""`mlrisk diff` on a throw-away git + DVC repository with two commits that differ in one
parameter, and the pull-request workflow that runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from mlrisk.cli import main
from mlrisk.report.diff import MARKER, verdict

STAGE = '''
import json, pathlib, yaml
t = yaml.safe_load(open("params.yaml"))["backtest"]["threshold"]
m = pathlib.Path("reports/metrics"); m.mkdir(parents=True, exist_ok=True)
head = {"accuracy": 0.53, "margin_pp": -1.0, "return_pct": round(100 * t, 2), "sharpe": round(10 * t, 2),
        "max_dd_pct": round(-50 * t, 2)}
(m / "headline.json").write_text(json.dumps(head))
(m / "backtest.json").write_text(json.dumps({"total_return": t, "trades": int(1000 * t)}))
p = pathlib.Path("reports/plots"); p.mkdir(parents=True, exist_ok=True)
(p / "equity.csv").write_text("time,equity\\n" + "".join(f"{i},{100 + i * t}\\n" for i in range(5)))
'''

DVC_YAML = {"stages": {"report": {
    "cmd": "python stage.py", "deps": ["stage.py"], "params": ["backtest.threshold"],
    "outs": [{"reports/metrics/backtest.json": {"cache": False}}],
    "metrics": [{"reports/metrics/headline.json": {"cache": False}}],
    "plots": [{"reports/plots/equity.csv": {"cache": False, "x": "time", "y": "equity"}}]}}}


def _sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return r.stdout


@pytest.fixture
def two_commits(tmp_path: Path) -> Path:
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (tmp_path / "params.yaml").write_text("backtest:\n  threshold: 0.08\n")
    dvc = [sys.executable, "-m", "dvc"]
    _sh("git", "init", "-q", "-b", "main", cwd=tmp_path)
    _sh(*dvc, "init", "-q", cwd=tmp_path)
    _sh(*dvc, "repro", "-q", cwd=tmp_path)
    _sh("git", "add", "-A", cwd=tmp_path)
    _sh("git", "commit", "-qm", "base", cwd=tmp_path)
    _sh("git", "checkout", "-qb", "change", cwd=tmp_path)
    (tmp_path / "params.yaml").write_text("backtest:\n  threshold: 0.12\n")
    _sh(*dvc, "repro", "-q", cwd=tmp_path)
    _sh("git", "add", "-A", cwd=tmp_path)
    _sh("git", "commit", "-qm", "threshold 0.12", cwd=tmp_path)
    return tmp_path


def test_diff_reports_params_metrics_plots_and_a_verdict(two_commits: Path, monkeypatch, capsys):
    monkeypatch.chdir(two_commits)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    assert main(["diff", "--out", "diff.md"]) == 0        # BASE defaults to main
    md = (two_commits / "diff.md").read_text()
    assert md.startswith(MARKER) and "against `main`" in md
    assert "**test accuracy +0.00 pp, margin over best baseline +0.00 pp, total return +4.00 pp, Sharpe +0.40, " \
           "max drawdown -2.00 pp**" in md
    params = md.split("### Parameters")[1].split("### Metrics")[0]
    assert "backtest.threshold" in params and "0.08" in params and "0.12" in params
    metrics = md.split("### Metrics")[1]
    assert "| reports/metrics/headline.json | return_pct" in metrics and "accuracy" not in metrics.split("<details>")[0]
    assert "reports/metrics/backtest.json" in metrics.split("<details>")[1] and "trades" in metrics
    assert "Changed: `reports/plots/equity.csv`" in md
    rendered = list((two_commits / "reports/diff").rglob("*.html"))
    assert rendered and "equity" in rendered[0].read_text()


def test_diff_against_an_unknown_revision_is_one_line(two_commits: Path, monkeypatch, capsys):
    monkeypatch.chdir(two_commits)
    assert main(["diff", "no-such-branch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: diff:") and err.count("\n") == 1


def test_verdict_by_hand():
    old = {"accuracy": 0.53, "margin_pp": -1.0, "return_pct": 5.0, "sharpe": 1.0, "max_dd_pct": -10.0}
    new = {"accuracy": 0.518, "margin_pp": -2.2, "return_pct": 3.5, "sharpe": 1.3, "max_dd_pct": -12.1}
    assert verdict(old, new) == ("test accuracy -1.20 pp, margin over best baseline -1.20 pp, total return -1.50 pp, "
                                 "Sharpe +0.30, max drawdown -2.10 pp")
    assert "no headline metrics at the base" in verdict(None, new)


def _workflow() -> dict:
    files = list((ROOT / ".github/workflows").glob("*.yml"))
    assert len(files) == 1
    return yaml.safe_load(files[0].read_text())


def test_workflow_is_valid_and_runs_the_documented_commands():
    wf = _workflow()
    assert "pull_request" in wf[True]  # YAML 1.1 reads the key `on` as True
    steps = wf["jobs"]["diff"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert "actions/setup-python" in uses and "actions/checkout" in uses
    assert all(u.startswith("actions/") for u in uses)  # nothing from a third party
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "experiments.md").read_text()
    first = "bash scripts/setup.sh && . .venv/bin/activate && dvc repro"
    assert first in readme and first in runs
    assert "mlrisk diff" in runs and "mlrisk diff" in page and ".github/workflows/metrics-diff.yml" in page
    assert "gh api" in runs and "mlrisk-diff" in runs  # posts or updates its one comment
    assert wf["permissions"]["pull-requests"] == "write"
