"""The DVC pipeline end to end, in a throw-away copy of the repository (small data, tiny model)."""

import json
from html import escape
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

# small but real: the last ~3 months of the shipped sample, a tiny network
SMALL = {
    "data": {"start": "2024-06-01"},
    "features": {"seq_len": 16},
    "train": {"layers": [{"type": "lstm", "units": 4}], "dense": [4], "epochs": 2, "batch_size": 128},
    "backtest": {"sweep": {"thresholds": [0.0, 0.02], "leverages": [1, 2]}},
}


def _sh(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _dvc(*args: str, cwd: Path) -> str:
    r = _sh(sys.executable, "-m", "dvc", *args, cwd=cwd)
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("data/", "models/", "reports/")) or f.endswith(".gitignore"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    shutil.copytree(ROOT / ".dvc", dst / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "tmp*"), dirs_exist_ok=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in SMALL.items():
        if section in params:
            params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        _sh(*cmd, cwd=dst)
    return dst


def test_repro_runs_then_is_a_no_op(repo: Path):
    out = _dvc("repro", cwd=repo)
    for stage in ("check_params", "fetch", "preprocess", "train", "evaluate", "backtest", "report"):
        assert f"Running stage '{stage}'" in out
    # the pipeline ends with the dashboard's path and the three headline numbers
    tail = out[out.index("Running stage 'report'"):]
    assert "reports/index.html" in tail and "test accuracy" in tail and "vs buy-and-hold" in tail and "max drawdown" in tail
    q = json.loads((repo / "reports/data_quality.json").read_text())
    assert q["first_candle"].startswith("2024-06-01") and q["rows"] > 2500
    for f in ("models/preprocess.json", "models/model.keras", "models/model.json", "reports/predictions.parquet",
              "reports/trades.csv", "reports/plots/equity.csv", "reports/backtest/sweep.csv",
              "reports/backtest/sweep_equity.parquet", "reports/evaluate/walk_forward.csv", "reports/index.html",
              "reports/metrics/headline.json"):
        assert (repo / f).exists(), f
    m = json.loads((repo / "reports/metrics/evaluate.json").read_text())
    assert {"majority", "persistence", "logistic"} <= set(m["baselines"]) and m["verdict"]
    meta = json.loads((repo / "models/model.json").read_text())
    assert meta["versions"]["keras"].startswith("3.") and len(meta["data_sha256"]) == 2 and "test" not in meta["data_sha256"]
    bt = json.loads((repo / "reports/metrics/backtest.json").read_text())
    assert bt["sweep"]["combinations"] == 4 and {"sharpe", "max_drawdown", "buy_hold_return", "liquidations"} <= set(bt)
    head = json.loads((repo / "reports/metrics/headline.json").read_text())
    assert head["return_pct"] == round(100 * bt["total_return"], 2) and head["accuracy"] == round(m["model"]["accuracy"], 4)
    html = (repo / "reports/index.html").read_text()
    assert html.count("<script type='text/javascript'>") == 1 and "<script src=" not in html  # plotly.js once, inlined
    assert escape(m["verdict"]) in html
    assert not list((repo / "reports").rglob("*.html"))[1:], "only the dashboard is HTML"
    size = sum(f.stat().st_size for f in (repo / "reports").rglob("*") if f.is_file())
    assert size < 12_000_000, f"reports/ is {size / 1e6:.1f} MB"
    again = _dvc("repro", cwd=repo)
    assert "Running stage" not in again and "up to date" in again
    # `mlrisk repro`: dvc repro (nothing to do), then the headline numbers and the dashboard's path
    r = _sh(sys.executable, "-m", "mlrisk.cli", "repro", cwd=repo)
    assert "Running stage" not in r.stdout + r.stderr
    assert "test accuracy" in r.stdout and "vs buy-and-hold" in r.stdout and "max drawdown" in r.stdout
    assert f"dashboard: {(repo / 'reports/index.html').resolve().as_uri()}" in r.stdout


def test_forced_retrain_gives_identical_weights_and_metrics(repo: Path):
    import keras

    metrics = (repo / "reports/train/metrics.json").read_text()
    w1 = keras.saving.load_model(repo / "models/model.keras", compile=False).get_weights()
    _dvc("repro", "-f", "train", cwd=repo)
    assert (repo / "reports/train/metrics.json").read_text() == metrics
    w2 = keras.saving.load_model(repo / "models/model.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    # the same weights give the same model file, so nothing downstream of train runs again
    out = _dvc("repro", cwd=repo)
    assert "Running stage" not in out, out


def test_exp_run_with_a_feature_param_reruns_preprocess_not_fetch(repo: Path):
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "lock", cwd=repo)
    out = _dvc("exp", "run", "-S", "features.seq_len=32", cwd=repo)
    assert "Running stage 'preprocess'" in out
    assert "Running stage 'fetch'" not in out


def test_exp_run_with_a_gru_network_and_exp_show_lists_both(repo: Path):
    out = _dvc("exp", "run", "-S", "train.layers=[{type:gru,units:4}]", cwd=repo)
    assert "Running stage 'train'" in out and "Running stage 'preprocess'" not in out
    shown = json.loads(_sh(sys.executable, "-m", "dvc", "exp", "show", "--json", cwd=repo).stdout)
    layers, accs = [], []
    for commit in shown:
        for exp in [commit] + [e for e in (commit.get("experiments") or [])]:
            for rev in exp.get("revs", [exp]) if "revs" in exp else [exp]:
                data = rev.get("data") or {}
                p = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                m = (data.get("metrics") or {}).get("reports/metrics/headline.json", {}).get("data", {})
                if p.get("train"):
                    layers.append(p["train"]["layers"][0]["type"])
                    accs.append(m.get("accuracy"))
    assert "gru" in layers and "lstm" in layers, layers
    assert all(a is not None for a in accs)


def test_exp_run_with_a_backtest_param_reruns_only_backtest_and_report(repo: Path):
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "gru", cwd=repo)
    out = _dvc("exp", "run", "-S", "backtest.threshold=0.0", cwd=repo)
    assert "Running stage 'backtest'" in out and "Running stage 'report'" in out
    for stage in ("fetch", "preprocess", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in out
    diff = json.loads(_sh(sys.executable, "-m", "dvc", "metrics", "diff", "--json", cwd=repo).stdout)
    assert set(diff) == {"reports/metrics/headline.json"}, diff
    assert set(diff["reports/metrics/headline.json"]) <= {"return_pct", "sharpe", "max_dd_pct", "dsr"}
    assert diff["reports/metrics/headline.json"]["return_pct"]["diff"] != 0


def test_walk_forward_mode_stitches_folds_and_reuses_unchanged_ones(repo: Path):
    """evaluate.mode walk_forward under DVC: out-of-sample predictions from every fold feed the
    backtest and the report; a second run whose folds did not change reads them from the cache."""
    wf = ["-S", "evaluate.mode=walk_forward", "-S", "evaluate.walk_forward.train=900", "-S", "evaluate.walk_forward.test=600"]
    out = _dvc("exp", "run", *wf, cwd=repo)
    assert "Running stage 'evaluate'" in out and "Running stage 'fetch'" not in out
    assert "Running stage 'train'" in out  # the pinned model moves to the most recent window
    spec = json.loads((repo / "models/preprocess.json").read_text())
    q = json.loads((repo / "reports/data_quality.json").read_text())
    assert spec["split"]["test"]["samples"] == 0 and spec["split"]["val"]["last"][:13] == q["last_candle"][:13]
    ev = json.loads((repo / "reports/metrics/evaluate.json").read_text())
    assert ev["mode"] == "walk_forward" and ev["walk_forward"]["folds"] >= 2 and ev["walk_forward"]["cached_folds"] == 0
    assert {"gbt", "logistic"} <= set(ev["baselines"]) and ev["margin_ci_low"] <= ev["margin_over_best_baseline"] <= ev["margin_ci_high"]
    import pandas as pd

    pred = pd.read_parquet(repo / "reports/predictions.parquet")
    assert pred["fold"].nunique() == ev["walk_forward"]["folds"] and pred["open_time"].is_unique
    bt = json.loads((repo / "reports/metrics/backtest.json").read_text())
    assert {"psr", "dsr", "pbo"} <= set(bt["overfitting"]) and bt["selection"]["report_period"][0] > bt["selection"]["selection_period"][1]
    # another evaluate parameter re-runs the stage, but no fold is retrained
    _dvc("exp", "run", *wf, "-S", "evaluate.confidence_bins=5", cwd=repo)
    again = json.loads((repo / "reports/metrics/evaluate.json").read_text())
    assert again["walk_forward"]["cached_folds"] == again["walk_forward"]["folds"]
    assert again["model"] == ev["model"]
