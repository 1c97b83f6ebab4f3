"""The dashboard (``reports/index.html``): reads what the earlier stages wrote, draws every chart
and lays them out in sections (header, data quality and feature distributions, training,
evaluation with the walk-forward folds and the block-bootstrap margin, strategy with PSR/DSR/PBO,
sweep with the honest selection, and the holdout's uses when there are any).

:func:`read_inputs` is the I/O edge; :func:`build` turns inputs into the page (a string) and
:func:`headline` into the few numbers that ``dvc exp show`` puts first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyarrow.parquet import read_schema

from mlrisk.backtest.costs import funding_sources_text, pnl_split, trade_costs
from mlrisk.backtest.performance import monthly_returns, portfolio_stats, rolling_sharpe
from mlrisk.config.params import Params
from mlrisk.errors import DataError
from mlrisk.evaluation.holdout_log import read_log
from mlrisk.evaluation.significance import ALPHA, beats, bound_label, ci_label, margin_text_of
from mlrisk.report import html as H
from mlrisk.report.backtest_charts import (costs_figure, equity_curves_figure, equity_figure, heatmap_figure,
                                           monthly_returns_figure, price_trades_figure, rolling_sharpe_figure)
from mlrisk.report.evaluation_charts import confidence_figure, folds_figure, predictions_figure, training_figure
from mlrisk.report.feature_charts import DEAD_STD, WILD_STD, feature_figure, feature_summary
from mlrisk.report.plotting import figure_div
from mlrisk.times import HOUR_MS

MAX_TRADE_ROWS = 10_000   # trades embedded in the page (the latest); all are in reports/trades.csv

# every input, relative to the reports directory; the optional ones may be missing
INPUTS = {
    "quality": "data_quality.json", "train_metrics": "train/metrics.json", "train_curves": "train/plots/metrics",
    "evaluate": "metrics/evaluate.json", "confidence": "plots/confidence.csv", "coverage": "plots/coverage.csv",
    "calibration": "plots/calibration.csv", "predictions": "predictions.parquet", "walk_forward": "evaluate/walk_forward.csv",
    "backtest": "metrics/backtest.json", "trades": "trades.csv", "equity": "plots/equity.csv",
    "sweep": "backtest/sweep.csv", "sweep_equity": "backtest/sweep_equity.parquet",
}
OPTIONAL = {"train_metrics", "train_curves", "walk_forward"}


@dataclass
class Inputs:
    quality: dict[str, Any]
    train_metrics: dict[str, Any] | None
    train_curves: pd.DataFrame | None        # epoch, train_loss, val_loss, train_accuracy, val_accuracy
    evaluate: dict[str, Any]
    confidence: pd.DataFrame
    coverage: pd.DataFrame
    calibration: pd.DataFrame
    predictions: pd.DataFrame
    walk_forward: pd.DataFrame | None
    backtest: dict[str, Any]
    trades: pd.DataFrame
    equity: pd.DataFrame                     # time (UTC), equity, buy_hold, drawdown
    sweep: pd.DataFrame
    sweep_equity: pd.DataFrame               # time + one column per combination
    features: "FeatureTables | None" = None  # scaled train/test features (absent in older runs)
    holdout: list[dict[str, Any]] | None = None  # holdout.json's uses, oldest first


@dataclass
class FeatureTables:
    names: list[str]
    train: pd.DataFrame                      # scaled feature columns of data/processed/train.parquet
    test: pd.DataFrame


def _stage_of(key: str) -> str:
    if key in ("quality",):
        return "fetch"
    if key in ("backtest", "trades", "equity", "sweep", "sweep_equity"):
        return "backtest"
    return "evaluate" if not key.startswith("train") else "train"


def _read_curves(root: Path) -> pd.DataFrame | None:
    """dvclive's per-epoch files (train/ and eval/ loss and accuracy, step 0-based) as one table."""
    cols = {}
    for part, prefix in (("train", "train"), ("eval", "val")):
        for metric in ("loss", "accuracy"):
            f = root / part / f"{metric}.tsv"
            if f.exists():
                cols[f"{prefix}_{metric}"] = pd.read_csv(f, sep="\t").set_index("step")[metric]
    if not cols:
        return None
    df = pd.DataFrame(cols).sort_index()
    df.insert(0, "epoch", df.index.to_numpy() + 1)
    return df.reset_index(drop=True)


def read_features(processed: str | Path, preprocess: str | Path) -> FeatureTables | None:
    """The scaled features of the training and test parts (``processed``/train.parquet, test.parquet),
    named by ``preprocess`` (models/preprocess.json, key ``features``); None when a file is missing."""
    processed, preprocess = Path(processed), Path(preprocess)
    files = [preprocess, processed / "train.parquet", processed / "test.parquet"]
    if not all(f.exists() for f in files):
        return None
    names = json.loads(preprocess.read_text()).get("features")
    if not isinstance(names, list) or not names:
        raise DataError(f"{preprocess}: no 'features' list: re-run `dvc repro preprocess`")
    parts = {}
    for f in files[1:]:
        missing = sorted(set(names) - set(read_schema(f).names))
        if missing:
            raise DataError(f"{f}: lacks features listed in {preprocess} ({', '.join(missing)}): re-run `dvc repro preprocess`")
        parts[f.stem] = pd.read_parquet(f, columns=names)
    return FeatureTables(names, parts["train"], parts["test"])


def read_holdout_uses(path: str | Path) -> list[dict[str, Any]]:
    """The uses in the holdout log (written by ``mlrisk holdout``); an absent file has none."""
    return read_log(path)["uses"]


def read_inputs(reports: str | Path, processed: str | Path | None = None, preprocess: str | Path | None = None,
                holdout: str | Path | None = None) -> Inputs:
    """Read every input under ``reports``; a missing required file is a :class:`DataError` naming the
    stage to run. Optional: the scaled feature tables (``processed`` directory and ``preprocess``
    spec) and the holdout log (``holdout``, an absent file meaning no uses)."""
    reports = Path(reports)
    out: dict[str, Any] = {}
    for key, rel in INPUTS.items():
        path = reports / rel
        if not path.exists():
            if key in OPTIONAL:
                out[key] = None
                continue
            raise DataError(f"{path} not found: run `dvc repro {_stage_of(key)}` first")
        if key == "train_curves":
            out[key] = _read_curves(path)
        elif path.suffix == ".json":
            out[key] = json.loads(path.read_text())
        elif path.suffix == ".parquet":
            out[key] = pd.read_parquet(path)
        else:
            out[key] = pd.read_csv(path)
    eq = out["equity"]
    eq["time"] = pd.to_datetime(eq["time"], utc=True)
    for c in ("entry_time", "exit_time"):
        out["trades"][c] = pd.to_datetime(out["trades"][c], utc=True)
    if out["walk_forward"] is not None and len(out["walk_forward"]) == 0:
        out["walk_forward"] = None
    if processed is not None and preprocess is not None:
        out["features"] = read_features(processed, preprocess)
    if holdout is not None:
        out["holdout"] = read_holdout_uses(holdout) or None
    return Inputs(**out)


def headline(ev: dict[str, Any], bt: dict[str, Any]) -> dict[str, Any]:
    """The numbers that matter, rounded so ``dvc exp show`` stays narrow: test accuracy (fraction),
    margin over the best baseline (percentage points), total return, buy-and-hold return and max
    drawdown (%), Sharpe; and, when the run has them, the margin's block-bootstrap p-value and the
    strategy's deflated Sharpe ratio (both probabilities)."""
    out = {
        "accuracy": round(ev["model"]["accuracy"], 4),
        "margin_pp": round(100 * ev["margin_over_best_baseline"], 2),
        "return_pct": round(100 * bt["total_return"], 2),
        "sharpe": round(bt["sharpe"], 2),
        "max_dd_pct": round(100 * bt["max_drawdown"], 2),
        "bh_return_pct": round(100 * bt["buy_hold_return"], 2),
    }
    if ev.get("p_value") is not None:
        out["p_value"] = round(ev["p_value"], 3)
    if (bt.get("overfitting") or {}).get("dsr") is not None:
        out["dsr"] = round(bt["overfitting"]["dsr"], 3)
    return out


def headline_lines(ev: dict[str, Any], bt: dict[str, Any]) -> list[str]:
    """The three headline numbers in words (printed at the end of ``dvc repro``)."""
    best = ev["best_baseline"]
    return [f"test accuracy {ev['model']['accuracy']:.4f} vs best baseline ({best}) "
            f"{ev['baselines'][best]['accuracy']:.4f}: {margin_text(ev)}",
            f"strategy return {bt['total_return']:+.2%} vs buy-and-hold {bt['buy_hold_return']:+.2%}",
            f"max drawdown {bt['max_drawdown']:.2%} (buy-and-hold {bt['buy_hold_max_drawdown']:.2%})"]


def _pct(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:+.2f} %"


def _num(v: Any, d: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "∞" if isinstance(v, float) and np.isinf(v) else ""
    return f"{v:,.{d}f}"


def _td(v: Any) -> str:
    if not isinstance(v, pd.Timedelta) or pd.isna(v):
        return ""
    s = int(v.total_seconds())
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d} d {h} h" if d else f"{h} h {m} min"


STAT_ROWS: list[tuple[str, str, Any]] = [
    ("Start", "start", lambda v: v.strftime("%Y-%m-%d %H:%M UTC")), ("End", "end", lambda v: v.strftime("%Y-%m-%d %H:%M UTC")),
    ("Period", "period", _td), ("Total return", "total_return", _pct), ("Benchmark (buy-and-hold) return", "buy_hold_return", _pct),
    ("CAGR", "cagr", _pct), ("Max drawdown", "max_drawdown", _pct), ("Max drawdown duration", "max_drawdown_duration", _td),
    ("Trades", "trades", str), ("Win rate", "win_rate", lambda v: f"{100 * v:.1f} %"),
    ("Best trade (return on margin)", "best_trade", _pct), ("Worst trade", "worst_trade", _pct), ("Average trade", "avg_trade", _pct),
    ("Average trade duration", "avg_trade_duration", _td), ("Profit factor", "profit_factor", _num),
    ("Expectancy (per trade, quote)", "expectancy", _num), ("Sharpe", "sharpe", _num), ("Sortino", "sortino", _num),
    ("Calmar", "calmar", _num), ("Exposure (time in market)", "exposure", lambda v: f"{100 * v:.1f} %"),
    ("Fees paid (quote)", "fees_paid", _num), ("Funding paid (quote)", "funding_paid", _num),
    ("Liquidations", "liquidations", str), ("Final equity (quote)", "final_equity", _num),
]


def stats_table(stats: dict[str, Any], overfitting: dict[str, Any] | None = None) -> str:
    """The strategy's statistics; with ``overfitting`` (backtest.json), PSR and DSR right after the
    Sharpe ratio and the sweep's PBO after them."""
    rows = []
    for label, key, fmt in STAT_ROWS:
        rows.append((label, fmt(stats[key])))
        if key == "sharpe" and overfitting:
            o = overfitting
            if o.get("psr") is not None:
                rows.append(("PSR (P(true Sharpe > 0))", _num(o["psr"])))
            if o.get("dsr") is not None:
                rows.append((f"DSR (deflated, {o.get('trials', '?')} trials)", _num(o["dsr"])))
            if o.get("pbo") is not None and np.isfinite(o["pbo"]):
                rows.append(("PBO of the sweep (in-sample best)", _num(o["pbo"])))
    return H.static_table(pd.DataFrame(rows, columns=["statistic", "value"]))


def overfitting_sentences(o: dict[str, Any]) -> list[str]:
    """PSR, DSR and PBO in words (all probabilities, 0..1)."""
    out = []
    if o.get("psr") is not None:
        out.append(f"PSR {o['psr']:.2f}: the probability that this strategy's true Sharpe ratio is above zero, "
                   "given the length, skewness and kurtosis of its returns.")
    if o.get("dsr") is not None:
        n = o.get("trials", "?")
        if o["dsr"] >= 1 - ALPHA:  # the one significance level (one-sided)
            out.append(f"DSR {o['dsr']:.2f}: even after {n} trials this Sharpe beats what the best of {n} noise "
                       f"strategies would show (at {100 * (1 - ALPHA):.0f} %).")
        else:
            out.append(f"DSR {o['dsr']:.2f}: after {n} trials this Sharpe is not distinguishable from the best of "
                       f"{n} noise strategies.")
    if o.get("pbo") is not None and np.isfinite(o["pbo"]):
        out.append(f"PBO {o['pbo']:.2f}: in {100 * o['pbo']:.0f} % of the {o.get('splits', '?')} combinatorial "
                   "splits of the period, the sweep's in-sample best combination ranked in the bottom half out of "
                   "sample" + (" — picking the sweep's best is more likely overfitting than skill." if o["pbo"] >= 0.5
                               else "."))
    return out


def _header(inp: Inputs, params: Params, prov: dict[str, str]) -> H.Section:
    q, ev, bt = inp.quality, inp.evaluate, inp.backtest
    t = inp.predictions["open_time"]
    rev = prov.get("git", "?") + (" (dirty)" if prov.get("dirty") == "true" else "")
    s = H.Section("summary", "Summary")
    walk = ev.get("mode") == "walk_forward"
    s.add(H.facts({"symbol": params.data.symbol, "interval": params.data.interval, "source": q.get("source", params.data.source),
                   "data": f"{str(q.get('first_candle', ''))[:16]} → {str(q.get('last_candle', ''))[:16]}",
                   ("out-of-sample (all folds)" if walk else "test part"): f"{t.iloc[0]:%Y-%m-%d %H:%M} → {t.iloc[-1]:%Y-%m-%d %H:%M}",
                   "git revision": rev, "params": prov.get("params", "?"), "data hash": prov.get("data", "?"),
                   "model hash": prov.get("model", "?")}))
    s.add(H.facts({("pooled accuracy" if walk else "test accuracy"): f"{ev['model']['accuracy']:.4f}",
                   f"best baseline ({ev['best_baseline']})": f"{ev['baselines'][ev['best_baseline']]['accuracy']:.4f}",
                   "margin": margin_text(ev),
                   "strategy return": _pct(bt["total_return"]), "buy-and-hold": _pct(bt["buy_hold_return"]),
                   "max drawdown": _pct(bt["max_drawdown"]), "Sharpe": _num(bt["sharpe"]),
                   **{k: _num(v) for k, v in _deflation(bt).items()}, "trades": str(bt["trades"])}))
    s.add(H.verdict_box(ev["verdict"], bool(ev.get("beats_best_baseline"))))
    return s


def _deflation(bt: dict[str, Any]) -> dict[str, float]:
    """PSR, DSR and PBO from backtest.json's ``overfitting`` (the ones present and finite)."""
    o = bt.get("overfitting") or {}
    return {k.upper(): o[k] for k in ("psr", "dsr", "pbo") if isinstance(o.get(k), (int, float)) and np.isfinite(o[k])}


def margin_text(ev: dict[str, Any]) -> str:
    """The margin over the best baseline in pp, whether it is significant, its 90 % block-bootstrap
    interval and one-sided p-value (:func:`mlrisk.evaluation.significance.margin_text_of`)."""
    return margin_text_of(ev)


def _quality(inp: Inputs) -> H.Section:
    q = inp.quality
    labels = {"rows": "rows", "first_candle": "first candle", "last_candle": "last candle", "gaps": "gaps",
              "missing_candles": "missing candles", "largest_gap_candles": "largest gap (candles)",
              "largest_gap_before": "largest gap before", "duplicates_dropped": "duplicates dropped",
              "filled_candles": "filled candles", "gap_policy": "gap policy"}
    s = H.Section("data", "Data quality")
    s.add(H.facts({v: ("—" if q.get(k) is None else f"{q[k]:,}" if isinstance(q.get(k), int) else str(q[k]))
                   for k, v in labels.items() if k in q}))
    s.add(H.note("From reports/data_quality.json (the fetch stage). Filled candles are flat candles at the previous "
                 "close with zero volume (gap policy ffill)."))
    if inp.features is not None:
        _features(s, inp.features)
    return s


def _features(s: H.Section, ft: FeatureTables) -> None:
    """The "Features" subsection: each feature's scaled distribution, train vs test, flagged when dead."""
    summary = feature_summary(ft.train, ft.test, ft.names)
    s.add('<h3 id="features">Features: scaled distributions, training vs test part</h3>')
    flagged = summary[summary["flag"] != ""]
    for rec in flagged.itertuples(index=False):
        what = (f"barely moves on the test part (std {rec.test_std:.3g} < {DEAD_STD} of the train-fitted scale): "
                "it is effectively dead there; clip outliers before scaling (features.clip) or transform it"
                if rec.flag == "dead" else
                f"has test std {rec.test_std:.3g} > {WILD_STD}: the train-fitted scale does not fit the test part")
        s.add(H.verdict_box(f"Feature {rec.feature} {what}.", False))
    s.add(figure_div(feature_figure(ft.train, ft.test, ft.names, summary), "fig-features"))
    f3 = lambda v: f"{v:.3f}"  # noqa: E731
    s.add(H.static_table(summary, {**{c: f3 for c in summary.columns[1:-1]}, "test_std": lambda v: f"{v:.3g}"}),
          H.note(f"Scaled as the model sees them (data/processed/, scaler fitted on the training part). Densities on "
                 f"shared bins over the 0.5–99.5 % range; the outer bins hold the tails. Flagged: test std below "
                 f"{DEAD_STD} (dead) or above {WILD_STD} (wild). {len(flagged)} of {len(summary)} flagged."))


def _training(inp: Inputs) -> H.Section:
    s = H.Section("training", "Training")
    if inp.train_curves is None:
        return s.add(H.note("No training curves found (reports/train/plots/metrics from dvclive)."))
    best = (inp.train_metrics or {}).get("best_epoch")
    s.add(figure_div(training_figure(inp.train_curves, best), "fig-training"))
    s.add(H.note("Per epoch, from dvclive (reports/train/). Early stopping restores the weights of the best epoch "
                 "(lowest validation loss)."))
    return s


def _evaluation(inp: Inputs, params: Params) -> H.Section:
    ev = inp.evaluate
    s = H.Section("evaluation", "Evaluation")
    s.add(H.verdict_box(ev["verdict"], bool(ev.get("beats_best_baseline"))))
    rows = [{"predictor": "model", **ev["model"]}] + [{"predictor": k, **v} for k, v in ev["baselines"].items()]
    table = pd.DataFrame(rows)[["predictor", "accuracy", "balanced_accuracy", "roc_auc", "log_loss", "brier", "n"]]
    f4 = lambda v: f"{v:.4f}"  # noqa: E731
    walk = ev.get("mode") == "walk_forward"
    part = "Pooled out-of-sample predictions of every fold" if walk else "Test part"
    s.add(H.facts({"mode": ("walk-forward" + (f", {ev['walk_forward']['folds']} folds" if "walk_forward" in ev else "")
                            if walk else ev.get("mode", "split")),
                   f"margin over {ev['best_baseline']} ({ci_label()}, one-sided p)": margin_text(ev)}))
    s.add(f"<h3>{part}: the model and every baseline</h3>",
          H.static_table(table, {c: f4 for c in table.columns[1:-1]}, highlight=0),
          H.note(f"The best baseline ({ev['best_baseline']}) is the one with the highest accuracy on these rows. "
                 f"For reference only, the exact binomial p-value against the majority class, which treats rows as "
                 f"independent: {ev['p_value_vs_majority']:.3g}. Baselines are fitted on the training part"
                 f"{' of each fold' if walk else ''} only."))
    boot = ev.get("bootstrap_vs_best")
    if boot:
        bt = pd.DataFrame([{"metric": k, **v} for k, v in boot.items()])
        cols = [c for c in ("metric", "mean_diff", "ci_low", "ci_high", "p_value", "block_length", "n", "reps") if c in bt]
        s.add(f"<h3>Model minus best baseline ({ev['best_baseline']}): paired block bootstrap</h3>",
              H.static_table(bt[cols], {"mean_diff": f4, "ci_low": f4, "ci_high": f4, "p_value": lambda v: f"{v:.3g}",
                                        "block_length": lambda v: f"{v:.1f}"}),
              H.note("Per row, model score minus baseline score (accuracy: fraction of rows; log loss: nats, positive = "
                     "model better), resampled in blocks of rows (stationary bootstrap) because neighbouring rows are "
                     f"correlated. {ci_label()}: the percentile interval of the bootstrap means; its lower bound is the "
                     f"{bound_label()}. p: one-sided, the share of bootstrap means at or below zero, so p < {ALPHA} "
                     "exactly when the lower bound is above zero. The verdict uses the accuracy row."))
    p = inp.predictions["p_up"].dropna().to_numpy()
    best_acc = ev["baselines"][ev["best_baseline"]]["accuracy"]
    s.add("<h3>Accuracy by confidence, coverage and calibration</h3>",
          figure_div(confidence_figure(p, inp.confidence, inp.coverage, inp.calibration, best_acc), "fig-confidence"))
    s.add("<h3>Predictions over the price</h3>",
          figure_div(predictions_figure(inp.predictions, params.data.symbol, params.data.interval), "fig-predictions"),
          H.note("Triangles: predicted direction, size by confidence; green right, red wrong, grey unlabelled. "
                 "Dense data is merged into coarser candles; every row is in reports/predictions.parquet."))
    if inp.walk_forward is not None:
        wf = inp.walk_forward
        s.add("<h3>Walk-forward: every fold</h3>")
        if {"fold", "accuracy", "margin"} <= set(wf.columns) and any(c.endswith("_accuracy") for c in wf.columns):
            s.add(figure_div(folds_figure(wf), "fig-folds"))
        s.add(H.data_table("walk-forward", wf, digits={"fold": 0, "n_test": 0, "block_length": 1},
                           signed=("margin", "margin_ci_low", "margin_ci_high"), filterable=False))
        s.add(H.note(_folds_note(wf, ev.get("walk_forward", {}))))
    return s


def _folds_note(wf: pd.DataFrame, w: dict[str, Any]) -> str:
    """One sentence on the folds: how many beat their best baseline, how many significantly."""
    n = len(wf)
    acc, margin = wf["accuracy"].to_numpy(dtype="float64"), wf["margin"].to_numpy(dtype="float64")
    how = [f"{w['window']} window"] if "window" in w else []
    how += [f"{w['train']} training candles"] if "train" in w else []
    how += [f"{w['test']} test candles each"] if "test" in w else []
    text = (f"{n} folds{' (' + ', '.join(how) + ')' if how else ''}: accuracy {acc.mean():.4f} ± {acc.std():.4f}, "
            f"margin {100 * margin.mean():+.2f} ± {100 * margin.std():.2f} pp; {int((margin > 0).sum())} of {n} folds "
            "are above their best baseline")
    if "p_value" in wf:
        n_beat = sum(beats(float(p)) for p in wf["p_value"].to_numpy(dtype="float64"))
        text += (f", {n_beat} significantly: their {ci_label()} (margin_ci_low, margin_ci_high) lies above zero, "
                 f"i.e. one-sided p < {ALPHA}")
    return text + ". Each fold's model and baselines are trained only on candles before its test block."


def _window(interval_ms: int, n: int) -> tuple[int, str]:
    """Rolling-Sharpe window in candles and its label: 30 days (a quarter of the data when shorter)."""
    w = max(min(int(30 * 24 * HOUR_MS // interval_ms), n // 4), 2)
    days = w * interval_ms / (24 * HOUR_MS)
    return w, f"{days:.0f}-day" if days >= 1 else f"{w}-candle"


def _strategy(inp: Inputs, params: Params) -> H.Section:
    bp = params.backtest
    eq = inp.equity
    t, equity = eq["time"], eq["equity"].to_numpy(dtype="float64")
    s = H.Section("strategy", "Strategy")
    s.add(H.note(f"Threshold {bp.threshold}, direction {bp.direction}, leverage {bp.leverage}, order size {bp.order_size}, "
                 f"pyramid {bp.pyramid_max}, {bp.entry} entries, hold {bp.hold}, take profit {bp.take_profit}, "
                 f"stop loss {bp.stop_loss}, fee {bp.fee_rate}, slippage {bp.slippage_bps} bps, funding "
                 + ("from history." if (inp.backtest.get("sources") or {}).get("funding") == "history"
                    else f"{bp.funding_rate}/8 h.")))
    s.add(H.note(inputs_sentence(inp.backtest, params)))
    stats = portfolio_stats(t, equity, inp.trades, inp.backtest)
    w, wlabel = _window(params.data.interval_ms, len(eq))
    over = inp.backtest.get("overfitting")
    s.add('<div class="grid2"><div>', "<h3>Statistics</h3>", stats_table(stats, over),
          *(H.note(t) for t in (overfitting_sentences(over) if over else [])), "</div><div>",
          figure_div(equity_figure(t, equity, eq["buy_hold"].to_numpy(), eq["drawdown"].to_numpy()), "fig-equity"),
          "</div></div>")
    s.add('<div class="grid2"><div>',
          figure_div(rolling_sharpe_figure(t, rolling_sharpe(equity, bp.initial_equity, w, params.data.interval_ms), wlabel),
                     "fig-rolling-sharpe"), "</div><div>",
          figure_div(monthly_returns_figure(monthly_returns(t, equity, bp.initial_equity)), "fig-monthly"), "</div></div>")
    s.add(figure_div(price_trades_figure(inp.predictions["open_time"], inp.predictions["close"].to_numpy(), inp.trades),
                     "fig-trades-price"))
    tr = inp.trades
    split = pnl_split(tr)
    if "funding_paid" in eq.columns:  # the backtest stage's per-settlement funding (perpetual with funding history)
        ft, fpaid, per_candle = t, eq["funding_paid"].to_numpy(dtype="float64"), True
    else:
        order = tr.sort_values("exit_time", kind="stable")
        ft, fpaid, per_candle = order["exit_time"], order["funding"].cumsum().to_numpy(dtype="float64"), False
    s.add("<h3>Where the P&amp;L came from</h3>",
          H.static_table(pd.DataFrame([("price P&L", _num(split["price"])), ("fees", _num(-split["fees"])),
                                       ("funding", _num(-split["funding"])), ("net P&L", _num(split["net"]))],
                                      columns=["part", "quote"])),
          H.note("Quote currency. Price P&L is what the price moves made (a liquidation: the isolated wallet lost, the margin less the funding paid from it); fees and "
                 "funding are what the strategy paid (funding received shows as a gain). Per trade: price P&L = "
                 "P&L + fees + funding (the trades table below and reports/trades.csv)."),
          figure_div(costs_figure(split, ft, fpaid, per_candle), "fig-costs"))
    shown = tr.iloc[-MAX_TRADE_ROWS:]
    costs = trade_costs(shown)
    table = pd.DataFrame({
        "entry": shown["entry_time"], "exit": shown["exit_time"], "side": shown["side"], "kind": shown["entry_kind"],
        "entry price": shown["entry_price"], "exit price": shown["exit_price"], "margin": shown["margin"],
        "price P&L": costs["price_pnl"], "fees": costs["fees"], "funding": shown["funding"],
        "P&L": shown["pnl"], "return on margin": shown["return_on_margin"], "exit reason": shown["exit_reason"],
        "hours": (shown["exit_time"] - shown["entry_time"]).dt.total_seconds() / 3600})
    s.add("<h3>Trades (click a header to sort, type to filter)</h3>",
          H.data_table("trades", table, digits={"margin": 2, "price P&L": 2, "fees": 2, "funding": 2, "P&L": 2,
                                                "return on margin": 2, "entry price": 2, "exit price": 2, "hours": 1},
                       percent=("return on margin",), signed=("price P&L", "P&L", "return on margin")))
    if len(tr) > len(shown):
        s.add(H.note(f"The latest {len(shown):,} of {len(tr):,} trades; all of them are in reports/trades.csv."))
    return s


def inputs_sentence(bt: dict[str, Any], params: Params) -> str:
    """Which market inputs the backtest used (``backtest.json``'s ``sources``, written for a perpetual
    run), or the spot run's fallbacks."""
    src = bt.get("sources")
    if not src:
        return (f"Backtested on {params.data.market} candles without perpetual inputs: funding at the constant "
                "backtest.funding_rate, liquidation on the last price with the flat maintenance_margin_rate, lot step "
                "and minimum notional from backtest.lot_step and backtest.min_notional.")
    return (f"Backtested on the perpetual's candles. {funding_sources_text(src)} Lot step {src['lot_step']['value']:g} "
            f"and minimum notional {src['min_notional']['value']:g} from {src['lot_step']['from']}; maintenance brackets "
            f"from {src['brackets_from']}.")


SWEEP_METRICS = ["total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "profit_factor",
                 "expectancy", "trades", "exposure", "fees_paid", "liquidations", "final_equity"]


def _sweep(inp: Inputs, params: Params) -> H.Section:
    s = H.Section("sweep", "Strategy comparison")
    table = inp.sweep
    pcols = [c for c in table.columns if c not in SWEEP_METRICS and c not in ("buy_hold_return", "buy_hold_max_drawdown", "funding_paid")]
    if not pcols:
        return s.add(H.note("No sweep: set lists under backtest.sweep (e.g. thresholds, leverages) to compare parameters."))
    bp = params.backtest
    is_main = np.ones(len(table), dtype=bool)
    for c in pcols:
        main_value = getattr(bp, c)
        if isinstance(main_value, (int, float)) and pd.api.types.is_numeric_dtype(table[c]):
            is_main &= np.isclose(table[c].to_numpy(dtype="float64"), float(main_value))
        else:
            is_main &= table[c].astype(str).to_numpy() == str(main_value)
    main_row = int(np.flatnonzero(is_main)[0]) if is_main.any() else None
    curves = inp.sweep_equity.drop(columns="time")
    main_label = next((c for c in curves.columns if c.endswith(" (main)")), None)
    sel = inp.backtest.get("selection")
    if sel:
        s.add(_selection_box(sel))
    best = table.iloc[int(np.argmax(table["total_return"].to_numpy(dtype="float64")))]
    s.add(H.verdict_box(f"In-sample selection below: every combination is ranked on the same candles it is shown on. "
                        f"The best of them ({', '.join(f'{c}={best[c]}' for c in pcols)}: "
                        f"{_pct(best['total_return'])}) was chosen with hindsight; its result overstates what choosing "
                        "it in advance would have earned" + (" (the box above shows the honest choice)." if sel else "."),
                        False))
    s.add(figure_div(equity_curves_figure(inp.sweep_equity["time"], curves, main_label), "fig-sweep-equity"),
          H.note("In-sample selection. Hover a curve for its parameters; the thick curve is the main parameters (params.yaml)."))
    varied = [c for c in pcols if table[c].nunique() > 1]
    if len(varied) == 2:
        x, y = varied
        s.add('<div class="grid2"><div>', figure_div(heatmap_figure(table, x, y, "total_return"), "fig-heat-return"),
              "</div><div>", figure_div(heatmap_figure(table, x, y, "sharpe"), "fig-heat-sharpe"), "</div></div>")
    else:
        s.add(H.note(f"{len(varied)} parameters vary: heatmaps are drawn when exactly two do."))
    shown = table[pcols + [c for c in SWEEP_METRICS if c in table]]
    s.add(f"<h3>Every combination ({len(table)}; the main parameters highlighted): in-sample selection, ranked on the "
          "period shown</h3>",
          H.data_table("sweep-table", shown, percent=("total_return", "cagr", "max_drawdown", "win_rate", "exposure"),
                       digits={**{c: None for c in pcols}, "total_return": 2, "cagr": 2, "max_drawdown": 2, "win_rate": 1, "exposure": 1, "sharpe": 2,
                               "sortino": 2, "calmar": 2, "profit_factor": 2, "expectancy": 2, "fees_paid": 2,
                               "final_equity": 2, "trades": 0, "liquidations": 0},
                       signed=("total_return", "sharpe"), highlight=main_row, limit=1000))
    return s


def _period(span: list[str]) -> str:
    return f"{span[0][:16].replace('T', ' ')} → {span[1][:16].replace('T', ' ')}" if len(span) == 2 else "?"


def _selection_box(sel: dict[str, Any]) -> str:
    """The honest selection: the combination chosen on the selection period, its result on the later
    report period (which had no say in the choice) and its rank there among all combinations."""
    rep, n, r = sel.get("report", {}), sel.get("combinations", "?"), sel.get("rank_on_report_period", "?")
    metric = sel.get("selected_by", "sharpe")
    chosen = ", ".join(f"{k}={v}" for k, v in sel.get("chosen", {}).items())
    facts = {"chosen": chosen, f"selected by {metric} on": _period(sel.get("selection_period", [])),
             f"its {metric} there": _num(sel.get("selection", {}).get(metric)),
             "reported on": _period(sel.get("report_period", [])),
             "return": _pct(rep.get("total_return")), "buy-and-hold": _pct(rep.get("buy_hold_return")),
             "Sharpe": _num(rep.get("sharpe")), "max drawdown": _pct(rep.get("max_drawdown")),
             "trades": str(rep.get("trades", "")), "rank on the report period": f"{r} of {n}"}
    return ('<div class="box"><h3>Honest selection: chosen on an earlier period, reported on a later one</h3>'
            + H.facts(facts)
            + H.note(f"The sweep's {n} combinations were ranked by {metric} on the selection period only; the winner "
                     f"then ran on the report period, where it ranks {r} of {n} (an in-sample pick would always rank 1).")
            + "</div>")


def _holdout(uses: list[dict[str, Any]]) -> H.Section:
    """Every use of the final holdout (holdout.json), with a red warning for each repeated look."""
    s = H.Section("holdout", "Holdout")
    for u in uses:
        if int(u.get("previous_uses") or 0) > 0:
            when = str(u.get("when", "?"))[:16].replace("T", " ")
            s.add(H.verdict_box(f"Use by {u.get('experiment', '?')} at {when} UTC: the holdout had been looked "
                                f"at before ({u['previous_uses']} earlier use{'s' if u['previous_uses'] > 1 else ''}): "
                                "no longer an untouched estimate.", False))
    last = uses[-1]
    if last.get("verdict"):
        good = bool(last.get("beats_best_baseline")) and not last.get("previous_uses")
        s.add("<h3>Latest use</h3>", H.verdict_box(str(last["verdict"]), good))
    rows = pd.DataFrame([{
        "when": str(u.get("when", ""))[:16].replace("T", " "), "experiment": u.get("experiment", ""),
        "holdout": _period([str(u.get("first", "")), str(u.get("last", ""))]), "candles": u.get("candles"),
        "earlier uses": u.get("previous_uses"), "accuracy": u.get("accuracy"), "best baseline": u.get("best_baseline"),
        "margin": u.get("margin"), "CI level": u.get("margin_ci_level"), "margin CI low": u.get("margin_ci_low"),
        "margin CI high": u.get("margin_ci_high"),
        "p": u.get("p_value"), "return": u.get("total_return"), "buy-and-hold": u.get("buy_hold_return"),
        "Sharpe": u.get("sharpe"), "max drawdown": u.get("max_drawdown"), "trades": u.get("trades")} for u in uses])
    pp = lambda v: "" if v is None or pd.isna(v) else f"{100 * v:+.2f} pp"  # noqa: E731
    s.add("<h3>Every use (holdout.json)</h3>", '<div class="scroll">',
          H.static_table(rows, {"accuracy": lambda v: "" if v is None or pd.isna(v) else f"{v:.4f}", "margin": pp,
                                "margin CI low": pp, "margin CI high": pp,
                                "CI level": lambda v: "" if v is None or pd.isna(v) else f"{100 * v:.0f} %",
                                "p": lambda v: "" if v is None or pd.isna(v) else f"{v:.3g}", "return": _pct,
                                "buy-and-hold": _pct, "Sharpe": _num, "max drawdown": _pct}), "</div>",
          H.note("The last evaluate.holdout candles, never seen by walk-forward, the split or the sweep, scored by "
                 "`mlrisk holdout EXP`; every use is logged. Only the first look is an untouched out-of-sample estimate."))
    return s


def build(inp: Inputs, params: Params, provenance: dict[str, str], plotly_js: str) -> str:
    """The whole dashboard as one HTML string (``plotly_js``: the library's source, inlined once)."""
    sections = [_header(inp, params, provenance), _quality(inp), _training(inp), _evaluation(inp, params),
                _strategy(inp, params), _sweep(inp, params)]
    if inp.holdout:
        sections.append(_holdout(inp.holdout))
    title = f"mlrisk · {params.data.symbol} {params.data.interval}"
    return H.page(title, sections, plotly_js)
