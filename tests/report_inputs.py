"""Synthetic inputs of the report stage, written where the earlier stages write them (no TensorFlow,
no training): candles, predictions with labels, scores from the real scoring code, a real backtest
and sweep, dvclive-style training curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from conftest import ROOT, synthetic_candles
from mlrisk.backtest.performance import drawdown_curve, performance
from mlrisk.backtest.runner import run_backtest, sweep_curves, sweep_report
from mlrisk.config import parse_params
from mlrisk.evaluation.confidence import calibration_table, confidence_table, coverage_table
from mlrisk.evaluation.scoring import score

SWEEP = {"thresholds": [0.02, 0.05, 0.1], "leverages": [1, 3]}


def write_report_inputs(root: Path, n_test: int = 2000, n_rows: int | None = None, freq: str = "1h",
                        interval: str = "1h", seed: int = 0, walk_forward: bool = True) -> dict:
    """Write every file the report stage reads under ``root`` (a fake repository) and return the params."""
    root = Path(root)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["interval"] = interval
    raw["backtest"]["sweep"] = SWEEP
    raw["backtest"]["threshold"] = 0.05
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    rng = np.random.default_rng(seed)

    c = synthetic_candles(n_test, seed=seed, freq=freq, price=30_000.0)
    c["open_time"] = c["open_time"].astype("datetime64[ns, UTC]")
    nxt = np.r_[c["close"].to_numpy()[1:], np.nan]
    label = np.where(np.isnan(nxt), np.nan, (nxt > c["close"].to_numpy()).astype(float))
    # a weakly informative P(up): right a bit more often than not
    p = np.clip(0.5 + np.where(label == 1, 0.006, -0.006) + rng.normal(0, 0.06, n_test), 0.01, 0.99)
    p[:10] = np.nan  # before the first full window
    pred = pd.DataFrame({**{k: c[k] for k in ("open_time", "open", "high", "low", "close", "volume")},
                         "p_up": p, "label": label})
    reports = root / "reports"
    for d in ("metrics", "plots", "evaluate", "backtest", "train/plots/metrics/train", "train/plots/metrics/eval"):
        (reports / d).mkdir(parents=True, exist_ok=True)
    pred.to_parquet(reports / "predictions.parquet", index=False)

    ok = ~np.isnan(p) & ~np.isnan(label)
    y, pp = label[ok].astype(int), p[ok]
    bl = {"majority": np.full(len(y), 0.51), "persistence": np.clip(0.5 + rng.normal(0, 0.05, len(y)), 0, 1),
          "logistic": np.clip(0.5 + rng.normal(0, 0.03, len(y)), 0, 1)}
    ev = score(y, pp, bl)
    if walk_forward:
        ev["walk_forward"] = {"folds": 2, "accuracy_mean": 0.52, "accuracy_std": 0.01, "margin_mean": 0.004,
                              "margin_std": 0.003, "folds_beating_best_baseline": 1}
    (reports / "metrics/evaluate.json").write_text(json.dumps(ev))
    confidence_table(y, pp, 10).to_csv(reports / "plots/confidence.csv", index=False)
    coverage_table(y, pp).to_csv(reports / "plots/coverage.csv", index=False)
    calibration_table(y, pp, 10).to_csv(reports / "plots/calibration.csv", index=False)
    wf = pd.DataFrame({"fold": [1, 2], "test_first": ["2024-01-01", "2024-02-01"], "accuracy": [0.51, 0.53],
                       "margin": [-0.002, 0.01]}) if walk_forward else pd.DataFrame({"fold": pd.Series(dtype="int64")})
    wf.to_csv(reports / "evaluate/walk_forward.csv", index=False)

    bp, ms = params.backtest, params.data.interval_ms
    pred_bt = pred.assign(p_up=pred["p_up"].fillna(0.5))
    res = run_backtest(pred_bt, bp, ms)
    close = pred["close"].to_numpy()
    m = performance(res.equity, bp.initial_equity, res.summary, ms, close)
    sweep = sweep_report(pred_bt, bp, bp.sweep_grid(), ms)
    m["sweep"] = sweep.summary()
    (reports / "metrics/backtest.json").write_text(json.dumps(m))
    res.trades.to_csv(reports / "trades.csv", index=False)
    pd.DataFrame({"time": pred["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "equity": res.equity,
                  "buy_hold": bp.initial_equity * close / close[0], "drawdown": drawdown_curve(res.equity)}
                 ).to_csv(reports / "plots/equity.csv", index=False)
    sweep.table.to_csv(reports / "backtest/sweep.csv", index=False)
    sweep_curves(sweep, pred["open_time"], 600).to_parquet(reports / "backtest/sweep_equity.parquet", index=False)

    epochs = 8
    loss_t = 0.69 - 0.004 * np.arange(epochs)
    loss_v = 0.692 - 0.003 * np.arange(epochs) + 0.0012 * np.arange(epochs) ** 1.5 / 3
    for part, loss in (("train", loss_t), ("eval", loss_v)):
        pd.DataFrame({"step": range(epochs), "loss": loss}).to_csv(reports / f"train/plots/metrics/{part}/loss.tsv", sep="\t", index=False)
        pd.DataFrame({"step": range(epochs), "accuracy": 1.02 - loss}).to_csv(
            reports / f"train/plots/metrics/{part}/accuracy.tsv", sep="\t", index=False)
    (reports / "train/metrics.json").write_text(json.dumps({"best_epoch": int(np.argmin(loss_v)) + 1}))
    n_rows = n_rows or int(n_test / 0.15)
    (reports / "data_quality.json").write_text(json.dumps({
        "source": "sample", "symbol": "BTCUSDT", "interval": interval, "rows": n_rows,
        "first_candle": "2020-01-01T00:00:00+00:00", "last_candle": str(pred["open_time"].iloc[-1]), "gaps": 1,
        "missing_candles": 2, "largest_gap_candles": 2, "largest_gap_before": "2021-03-24T14:00:00+00:00",
        "duplicates_dropped": 0, "filled_candles": 2, "gap_policy": "ffill"}))
    (root / "data/raw").mkdir(parents=True, exist_ok=True)
    (root / f"data/raw/{params.data.symbol}-{interval}.parquet").write_bytes(b"raw candles stand-in")
    (root / "models").mkdir(exist_ok=True)
    (root / "models/model.keras").write_bytes(b"model stand-in")
    return {"params": params, "pred": pred, "trades": res.trades, "evaluate": ev, "backtest": m}


