"""The final holdout: the last ``evaluate.holdout`` candles, which walk-forward, the split and the
sweep never see, scored once by ``mlrisk holdout``.

Spending the holdout trains one more fold (the walk-forward window rules, ending a purge gap
before the holdout), predicts the holdout, scores the model against the baselines with the paired
block bootstrap, and backtests the main strategy on it. Every use is appended to a log file
(``holdout.json`` beside ``params.yaml``, committed with the project) with the data's and
parameters' hashes, so a second look at the same holdout is reported as such: after the first
look it is no longer an untouched out-of-sample estimate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mlrisk.config.params import Params
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.split import purge_gap
from mlrisk.errors import DataError
from mlrisk.evaluation.folds import Fold
from mlrisk.hashing import frame_digest
from mlrisk.evaluation.holdout_log import previous_uses, read_log, record_use



def holdout_fold(n_rows: int, params: Params) -> Fold:
    """The fold whose test block is the holdout: the last ``evaluate.holdout`` rows."""
    wf, h = params.evaluate.walk_forward, params.evaluate.holdout
    if h <= 0:
        raise DataError("evaluate.holdout is 0: set it to the number of final candles to hold out (e.g. 1460) "
                        "and re-run the pipeline, so that nothing else ever sees them")
    gap = purge_gap(params.features.label.horizon, params.features.seq_len, wf.embargo)
    test_start = n_rows - h
    train_end = test_start - gap
    start = 0 if wf.window == "expanding" else max(0, train_end - wf.train)
    if train_end - start < 2 * (params.features.seq_len + 10):
        raise DataError(f"only {n_rows} candles: too few before the {h}-candle holdout to train on")
    val_start = train_end - max(1, int(round((train_end - start) * wf.val)))
    return Fold(0, start, val_start, test_start, n_rows)


def data_hash(candles: pd.DataFrame) -> str:
    return frame_digest(candles, CANDLE_COLUMNS).hex()[:16]


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def spend_holdout(candles: pd.DataFrame, params: Params, experiment: str, log_path: str | Path,
                  reps: int = 2000, others: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Train the holdout fold, score it, backtest the main strategy on it, and log the use.
    Returns the result, including ``previous_uses`` (0 on the first, honest look)."""
    from mlrisk.backtest.performance import performance
    from mlrisk.backtest.runner import run_backtest
    from mlrisk.evaluation.scoring import score
    from mlrisk.evaluation.fold import FoldSettings, run_fold

    fold = holdout_fold(len(candles), params)
    out = run_fold(candles, fold, FoldSettings.of(params), others)
    rows = out[out["scored"]]
    names = [c[2:] for c in rows.columns if c.startswith("p_") and c != "p_up"]
    s = score(rows["label"].to_numpy().astype(int), rows["p_up"].to_numpy(),
              {n: rows[f"p_{n}"].to_numpy() for n in names}, reps=reps, seed=params.train.seed)
    bt = run_backtest(out, params.backtest, params.data.interval_ms)
    perf = performance(bt.equity, params.backtest.initial_equity, bt.summary, params.data.interval_ms,
                       out["close"].to_numpy(dtype="float64"))
    first, last = out["open_time"].iloc[0].isoformat(), out["open_time"].iloc[-1].isoformat()
    before = previous_uses(read_log(log_path), first, last)
    result = {
        "experiment": experiment, "first": first, "last": last, "candles": int(len(out)),
        "data_sha": data_hash(candles), "params_sha": params_hash(params), "previous_uses": len(before),
        "accuracy": s["model"]["accuracy"], "best_baseline": s["best_baseline"],
        "margin": s["margin_over_best_baseline"], "margin_ci_low": s["margin_ci_low"],
        "margin_ci_high": s["margin_ci_high"], "margin_ci_level": s["margin_ci_level"], "p_value": s["p_value"],
        "beats_best_baseline": s["beats_best_baseline"], "verdict": s["verdict"],
        "total_return": perf["total_return"], "buy_hold_return": perf["buy_hold_return"],
        "sharpe": perf["sharpe"], "max_drawdown": perf["max_drawdown"], "trades": perf["trades"],
    }
    record_use(log_path, result)
    return result
