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
from mlrisk.backtest.overfitting import sweep_overfitting
from mlrisk.backtest.runner import run_backtest, sweep_curves, sweep_report
from mlrisk.backtest.selection import select_and_report
from mlrisk.evaluation.folds import split_periods
from mlrisk.config.params import parse_params
from mlrisk.evaluation.confidence import calibration_table, confidence_table, coverage_table
from mlrisk.evaluation.scoring import score

SWEEP = {"thresholds": [0.02, 0.05, 0.1], "leverages": [1, 3]}


FOLDS = 4
DEAD = "volume_pct"   # the synthetic feature whose test values all lie within +-0.03 after scaling


def write_report_inputs(root: Path, n_test: int = 2000, n_rows: int | None = None, freq: str = "1h",
                        interval: str = "1h", seed: int = 0, walk_forward: bool = True, honest: bool = True,
                        holdout_uses: int = 2, futures: bool = False) -> dict:
    """Write every file the report stage reads under ``root`` (a fake repository) and return the params.

    ``walk_forward``: evaluate.json in walk-forward mode with ``FOLDS`` folds (a ``fold`` column in the
    predictions, one row per fold in walk_forward.csv); else split mode with an empty fold table.
    ``honest``: the issue-12 additions (overfitting and selection in backtest.json, the scaled
    feature tables, ``holdout.json`` with ``holdout_uses`` uses, the second onwards a repeated look);
    without it the files look like an older run's. ``futures``: a perpetual run as the backtest stage
    writes it (funding every 8 h, mark prices, the shipped brackets and lot filters; ``sources`` and
    ``pnl`` in backtest.json, ``funding_paid`` in equity.csv)."""
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
    if walk_forward:
        pred["fold"] = np.arange(n_test) * FOLDS // n_test + 1
    reports = root / "reports"
    for d in ("metrics", "plots", "evaluate", "backtest", "train/plots/metrics/train", "train/plots/metrics/eval"):
        (reports / d).mkdir(parents=True, exist_ok=True)
    pred.to_parquet(reports / "predictions.parquet", index=False)

    ok = ~np.isnan(p) & ~np.isnan(label)
    y, pp = label[ok].astype(int), p[ok]
    bl = {"majority": np.full(len(y), 0.51), "persistence": np.clip(0.5 + rng.normal(0, 0.05, len(y)), 0, 1),
          "logistic": np.clip(0.5 + rng.normal(0, 0.03, len(y)), 0, 1)}
    if honest:
        bl["gbt"] = np.clip(0.5 + rng.normal(0, 0.04, len(y)), 0, 1)
    ev = score(y, pp, bl, reps=300)
    if not honest:   # an older run: no gbt, no bootstrap of the margin
        for k in ("margin_ci_low", "margin_ci_high", "margin_ci_level", "p_value", "bootstrap_vs_best"):
            ev.pop(k)
    wf = pd.DataFrame({"fold": pd.Series(dtype="int64")})
    if walk_forward:
        ev["mode"] = "walk_forward"
        fold_of = pred["fold"].to_numpy()[ok]
        rows = []
        for f in range(1, FOLDS + 1):
            sel = fold_of == f
            s = score(y[sel], pp[sel], {k: v[sel] for k, v in bl.items()}, reps=200, seed=f)
            t = pred["open_time"][pred["fold"] == f]
            rows.append({"fold": f, "train_first": str(pred["open_time"].iloc[0] - pd.Timedelta(days=200))[:19],
                         "test_first": str(t.iloc[0])[:19], "test_last": str(t.iloc[-1])[:19], "n_test": int(sel.sum()),
                         "accuracy": s["model"]["accuracy"], "log_loss": s["model"]["log_loss"],
                         "roc_auc": s["model"]["roc_auc"],
                         **{f"{k}_accuracy": s["baselines"][k]["accuracy"] for k in bl},
                         "best_baseline": s["best_baseline"], "margin": s["margin_over_best_baseline"],
                         "margin_ci_low": s.get("margin_ci_low", np.nan), "margin_ci_high": s.get("margin_ci_high", np.nan),
                         "p_value": s.get("p_value", np.nan), "beats_best_baseline": s["beats_best_baseline"]})
        wf = pd.DataFrame(rows)
        ev["walk_forward"] = {"folds": FOLDS, "folds_above_best_baseline": int((wf["margin"] > 0).sum()),
                              "folds_beating_best_baseline": int(wf["beats_best_baseline"].sum()),
                              "window": "expanding", "train": 4000, "test": n_test // FOLDS}
    elif honest:
        ev["mode"] = "split"
    (reports / "metrics/evaluate.json").write_text(json.dumps(ev))
    confidence_table(y, pp, 10).to_csv(reports / "plots/confidence.csv", index=False)
    coverage_table(y, pp).to_csv(reports / "plots/coverage.csv", index=False)
    calibration_table(y, pp, 10).to_csv(reports / "plots/calibration.csv", index=False)
    wf.to_csv(reports / "evaluate/walk_forward.csv", index=False)

    bp, ms = params.backtest, params.data.interval_ms
    pred_bt = pred.assign(p_up=pred["p_up"].fillna(0.5))
    brackets = None
    if futures:
        from mlrisk.backtest.futures import load_brackets

        hour = pred["open_time"].dt.hour.to_numpy()
        pred_bt = pred_bt.assign(funding_rate=np.where(hour % 8 == 0, 0.0001, 0.0), mark_open=pred["open"] * 1.0002,
                                 mark_high=pred["high"] * 1.0002, mark_low=pred["low"] * 1.0002)
        bp, brackets = bp.model_copy(update={"lot_step": 0.001, "min_notional": 100.0}), load_brackets("BTCUSDT")
    res = run_backtest(pred_bt, bp, ms, brackets)
    close = pred["close"].to_numpy()
    m = performance(res.equity, bp.initial_equity, res.summary, ms, close)
    sweep = sweep_report(pred_bt, bp, bp.sweep_grid(), ms, brackets)
    m["sweep"] = sweep.summary()
    if honest:
        main = sweep.main if sweep.main is not None else 0
        m["overfitting"] = sweep_overfitting(sweep.equities, bp.initial_equity, main, blocks=8)
        if walk_forward:
            sel, rep = split_periods(pred_bt)
        else:
            half = n_test // 2
            sel, rep = pred_bt.iloc[:half].reset_index(drop=True), pred_bt.iloc[half:].reset_index(drop=True)
        m["selection"] = select_and_report(sel, rep, bp, bp.sweep_grid(), ms, brackets=brackets)
    curve = pd.DataFrame({"time": pred["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "equity": res.equity,
                          "buy_hold": bp.initial_equity * close / close[0], "drawdown": drawdown_curve(res.equity)})
    if futures:
        from mlrisk.backtest.costs import funding_by_candle, pnl_split

        src = {"lot_step": {"value": 0.001, "from": "exchange_info.json (test)"},
               "min_notional": {"value": 100.0, "from": "exchange_info.json (test)"}, "brackets_from": "leverage_brackets.json"}
        m |= {"sources": {**res.sources, **src}, "pnl": pnl_split(res.trades)}
        curve["funding_paid"] = np.cumsum(funding_by_candle(res.trades, pred_bt["funding_rate"].to_numpy(),
                                                            pred_bt["mark_open"].to_numpy(), pred_bt["open"].to_numpy()))
    (reports / "metrics/backtest.json").write_text(json.dumps(m))
    res.trades.to_csv(reports / "trades.csv", index=False)
    curve.to_csv(reports / "plots/equity.csv", index=False)
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
    if honest:
        _write_features(root, params.features.names, rng)
        _write_holdout(root, ev, m, holdout_uses)
    return {"params": params, "pred": pred, "trades": res.trades, "evaluate": ev, "backtest": m}


def _write_features(root: Path, names: list[str], rng: np.random.Generator) -> None:
    """Scaled feature tables as the preprocess stage writes them: train about N(0, 1); on test every
    feature alike except ``DEAD``, squeezed into +-0.03 (the zero-volume-candle scale of issue 12)."""
    (root / "data/processed").mkdir(parents=True, exist_ok=True)
    for part, n in (("train", 3000), ("test", 800)):
        cols = {f: rng.standard_t(5, n) * (0.01 if part == "test" and f == DEAD else 1.0) for f in names}
        pd.DataFrame({**cols, "label": rng.integers(0, 2, n).astype(float), "part": part}).to_parquet(
            root / f"data/processed/{part}.parquet", index=False)
    (root / "models/preprocess.json").write_text(json.dumps({"features": list(names), "seq_len": 48}))


def _write_holdout(root: Path, ev: dict, bt: dict, uses: int) -> None:
    """``holdout.json`` with ``uses`` uses of the same holdout (the second onwards a repeated look)."""
    log = {"version": 1, "uses": []}
    for i in range(uses):
        log["uses"].append({
            "when": f"2026-11-2{i}T10:00:00+00:00", "experiment": f"exp-{i + 1}", "first": "2025-06-01T00:00:00+00:00",
            "last": "2025-07-31T23:00:00+00:00", "candles": 1460, "data_sha": "a" * 16, "params_sha": f"{i}" * 16,
            "previous_uses": i, "accuracy": ev["model"]["accuracy"], "best_baseline": ev["best_baseline"],
            "margin": ev["margin_over_best_baseline"] - 0.001 * i, "margin_ci_low": -0.03, "margin_ci_high": 0.02,
            "margin_ci_level": 0.9, "p_value": 0.4, "beats_best_baseline": False, "verdict": ev["verdict"], "total_return": bt["total_return"],
            "buy_hold_return": bt["buy_hold_return"], "sharpe": bt["sharpe"], "max_drawdown": bt["max_drawdown"],
            "trades": bt["trades"]})
    (root / "holdout.json").write_text(json.dumps(log))
