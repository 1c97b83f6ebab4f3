"""DVC stage `backtest`: reports/predictions.parquet -> reports/metrics/backtest.json, reports/trades.csv,
reports/plots/equity.csv, and the sweep in reports/backtest/ (sweep.csv: every combination's metrics;
sweep_equity.parquet: every equity curve at up to 600 shared times). The report stage draws them."""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.config.backtest import BacktestParams
from mlrisk.config.data import DataParams
from mlrisk.stage import run_stage
from mlrisk.io import read_parquet, write_csv, write_json, write_parquet


def body(params, args) -> None:
    from mlrisk.backtest.overfitting import equity_returns, sharpe_stats, sweep_overfitting
    from mlrisk.backtest.performance import drawdown_curve, performance
    from mlrisk.backtest.runner import run_backtest, sweep_curves, sweep_report
    from mlrisk.backtest.selection import select_and_report

    path = Path(args.predictions)
    pred = read_parquet(path, "run `dvc repro evaluate`")
    bp, interval_ms = params.backtest, params.data.interval_ms
    t0 = time.perf_counter()
    res = run_backtest(pred, bp, interval_ms)
    close = pred["close"].to_numpy(dtype="float64")
    metrics = performance(res.equity, bp.initial_equity, res.summary, interval_ms, close)
    grid = bp.sweep_grid()
    sweep = sweep_report(pred, bp, grid or [{}], interval_ms)  # no sweep: the main parameters alone
    if grid:
        metrics["sweep"] = sweep.summary()
    st = sharpe_stats(equity_returns(res.equity, bp.initial_equity)[:, 0])
    metrics |= {"sharpe_per_period": st["sr"], "n_returns": st["n"], "returns_skew": st["skew"], "returns_kurtosis": st["kurt"]}
    # the main strategy's PSR/DSR, every sweep combination (and the main one, if the grid lacks it) a trial; PBO of the sweep
    curves = sweep.equities if sweep.main is not None else np.vstack([sweep.equities, res.equity[None, :]])
    main = sweep.main if sweep.main is not None else len(curves) - 1
    metrics["overfitting"] = sweep_overfitting(curves, bp.initial_equity, main, bp.extra_trials)
    select = read_parquet(Path(args.selection_predictions), "run `dvc repro evaluate`")
    if grid and len(select) > 1:  # choose the combination on an earlier period, report it on this one
        report_period = pred[pred["open_time"] > select["open_time"].iloc[-1]].reset_index(drop=True)
        metrics["selection"] = select_and_report(select, report_period, bp, grid, interval_ms)
    secs = time.perf_counter() - t0

    out = Path(args.out_dir)
    write_csv(out / "sweep.csv", sweep.table)
    write_parquet(out / "sweep_equity.parquet", sweep_curves(sweep, pred["open_time"], 600))
    write_csv(args.trades, res.trades)
    write_csv(args.equity, pd.DataFrame({
        "time": pred["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "equity": res.equity,
        "buy_hold": bp.initial_equity * close / close[0], "drawdown": drawdown_curve(res.equity)}))
    write_json(args.metrics, metrics)
    print(f"backtest: total return {metrics['total_return']:+.2%} (buy-and-hold {metrics['buy_hold_return']:+.2%}), "
          f"Sharpe {metrics['sharpe']:.2f}, max drawdown {metrics['max_drawdown']:.2%}, {metrics['trades']} trades, "
          f"{metrics['liquidations']} liquidations; {len(grid)} sweep combinations; {secs:.2f} s")
    ov = metrics["overfitting"]
    print(f"backtest: deflated Sharpe ratio {ov['dsr']:.2f} ({ov['trials']} trials), PBO of the sweep {ov['pbo']:.2f}"
          + (f"; chosen on {metrics['selection']['selection_period'][0][:10]}..{metrics['selection']['selection_period'][1][:10]}: "
             f"{metrics['selection']['chosen']} -> {metrics['selection']['report']['total_return']:+.2%} here "
             f"(rank {metrics['selection']['rank_on_report_period']} of {len(grid)})" if "selection" in metrics else ""))


def add_args(p):
    p.add_argument("--predictions", default="reports/predictions.parquet")
    p.add_argument("--selection-predictions", default="reports/predictions_select.parquet",
                   help="P(up) on the period the sweep is ranked on (earlier than --predictions)")
    p.add_argument("--metrics", default="reports/metrics/backtest.json")
    p.add_argument("--trades", default="reports/trades.csv")
    p.add_argument("--equity", default="reports/plots/equity.csv")
    p.add_argument("--out-dir", default="reports/backtest")


if __name__ == "__main__":
    sys.exit(run_stage("backtest", __doc__, body, add_args, sections={"backtest": BacktestParams, "data": DataParams}))
