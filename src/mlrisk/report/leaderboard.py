"""``mlrisk leaderboard``: experiments ranked by their out-of-sample margin over the best baseline,
with the number of experiments tried and corrections for it.

Reads ``dvc exp show --json`` (the commits and their experiments) and, for each, the full
``reports/metrics/evaluate.json`` and ``backtest.json`` committed with it (``git show``). The
margin is the walk-forward pooled margin when the experiment ran in ``walk_forward`` mode (the top-level
scores of its ``evaluate.json``), else the test part's, shown with its 90 % block-bootstrap interval,
one-sided p-value and whether it is significant (the interval above zero, p < ALPHA; see
:mod:`mlrisk.evaluation.significance`). An experiment recorded before that interval (no
``margin_ci_level``) shows no interval and no verdict. Two corrections for having tried ``m`` experiments:

- accuracy: the block-bootstrap p-value times ``m`` (Bonferroni, capped at 1);
- strategy: the deflated Sharpe ratio of each experiment's main strategy with ``m`` trials and the
  variance of the experiments' per-period Sharpe ratios (see :mod:`mlrisk.backtest.overfitting`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd

from mlrisk.backtest.overfitting import deflated_sharpe_ratio
from mlrisk.evaluation.significance import ALPHA, CI_LEVEL, beats, bound_label, ci_label
from mlrisk.errors import MlriskError

METRICS_FILES = {"evaluate": "reports/metrics/evaluate.json", "backtest": "reports/metrics/backtest.json"}


def flatten_exp_show(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Commits and experiments of ``dvc exp show --json`` as ``{"name", "rev", "params"}`` rows (the
    workspace row is left out: it is not a recorded experiment)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(entry: dict[str, Any], fallback_name: str | None) -> None:
        data = entry.get("data") or {}
        rev = entry.get("rev") or data.get("rev")
        if not rev or rev == "workspace" or rev in seen or entry.get("error"):
            return
        seen.add(rev)
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        rows.append({"name": entry.get("name") or fallback_name or rev[:7], "rev": rev, "params": params})

    for commit in shown:
        add(commit, None)
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or [exp]:
                add(rev, exp.get("name"))
    return rows


def leaderboard(rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """Rank ``rows`` (each with ``name``, ``rev``, ``evaluate`` and ``backtest`` metric dicts) by
    their margin over the best baseline. Returns the table and the number of experiments ``m``."""
    rows = [r for r in rows if r.get("evaluate")]
    m = len(rows)
    out = []
    srs = np.array([(r.get("backtest") or {}).get("sharpe_per_period", np.nan) for r in rows], dtype="float64")
    var_sr = float(np.nanvar(srs, ddof=1)) if np.isfinite(srs).sum() > 1 else 0.0
    for r in rows:
        ev, bt = r["evaluate"], r.get("backtest") or {}
        p = ev.get("p_value")  # in walk_forward mode the top-level scores are the folds' pooled out-of-sample ones
        level = ev.get("margin_ci_level")
        ours = level is not None and np.isclose(level, CI_LEVEL) and ev.get("margin_ci_low") is not None
        dsr = float("nan")
        if bt.get("sharpe_per_period") is not None and bt.get("n_returns"):
            dsr = deflated_sharpe_ratio(bt["sharpe_per_period"], int(bt["n_returns"]), bt.get("returns_skew", 0.0),
                                        bt.get("returns_kurtosis", 3.0), var_sr, m)
        out.append({
            "experiment": r["name"], "rev": r["rev"][:7], "mode": ev.get("mode", "split"),
            "accuracy": ev.get("model", {}).get("accuracy"),
            "best_baseline": ev.get("best_baseline"),
            "margin_pp": 100 * ev["margin_over_best_baseline"] if ev.get("margin_over_best_baseline") is not None else None,
            "margin_ci_pp": f"[{100 * ev['margin_ci_low']:+.2f}, {100 * ev['margin_ci_high']:+.2f}]" if ours else "",
            "significant": ("yes" if beats(p) else "no") if ours else "",
            "p_value": p,
            "p_adjusted": min(1.0, p * m) if p is not None else None,
            "return_pct": 100 * bt["total_return"] if bt.get("total_return") is not None else None,
            "sharpe": bt.get("sharpe"),
            "dsr_across_experiments": dsr,
        })
    table = pd.DataFrame(out)
    if len(table):
        table = table.sort_values("margin_pp", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return table, m


def _run(args: list[str], cwd: str) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise MlriskError(f"`{' '.join(args)}` failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return r.stdout


def list_experiments(repo: str = ".", all_commits: bool = False) -> list[dict[str, Any]]:
    """The current commit and its experiments (every commit with ``all_commits``) from ``dvc exp show``."""
    return flatten_exp_show(json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if all_commits else []), repo) or "[]"))


def distinct_trials(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without repeats of the same params (the same trial, counted once), first kept."""
    out, seen = [], set()
    for r in rows:
        key = json.dumps(r["params"], sort_keys=True)
        if r["params"] and key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def gather(repo: str = ".", all_commits: bool = False) -> list[dict[str, Any]]:
    """The distinct trials of :func:`list_experiments` with each one's committed evaluate and backtest metrics."""
    rows = distinct_trials(list_experiments(repo, all_commits))
    for r in rows:
        for key, path in METRICS_FILES.items():
            shown = subprocess.run(["git", "show", f"{r['rev']}:{path}"], cwd=repo, capture_output=True, text=True)
            r[key] = json.loads(shown.stdout) if shown.returncode == 0 and shown.stdout.strip() else None
    return rows


def render(table: pd.DataFrame, m: int) -> str:
    """The leaderboard as a plain-text table with a header line about ``m``."""
    head = (f"{m} experiment(s) tried. margin_ci_pp: the margin's {ci_label()} (its lower bound is the {bound_label()}); "
            f"p_value: one-sided block-bootstrap; significant: yes exactly when that interval lies above zero "
            f"(p_value < {ALPHA}), before correcting for the {m} tried. p_adjusted = p_value x {m} (Bonferroni); "
            f"dsr_across_experiments deflates each strategy's Sharpe for {m} trials.\n")
    if table.empty:
        return head + "(no experiment has evaluate metrics yet: run `dvc exp run` first)\n"
    return head + table.to_string(index=False, float_format=lambda v: f"{v:.4g}") + "\n"
