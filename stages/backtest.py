"""DVC stage `backtest`: reports/predictions.parquet -> reports/metrics/backtest.json, reports/trades.csv,
reports/plots/equity.csv and reports/backtest/{strategy,comparison}.html (+ sweep.csv)."""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.cli import run_stage
from mlrisk.errors import DataError
from mlrisk.io import atomic_path, write_json


def body(params, args) -> None:
    from mlrisk.backtest.charts import (combo_label, equity_curves_figure, heatmap_figure, strategy_figure,
                                        write_comparison)
    from mlrisk.backtest.metrics import drawdown_curve, performance, sweep_table
    from mlrisk.backtest.runner import run_backtest, run_sweep
    from mlrisk.evaluate import json_safe
    from mlrisk.plotting import write_html

    path = Path(args.predictions)
    if not path.exists():
        raise DataError(f"{path} not found: run `dvc repro evaluate` first")
    pred = pd.read_parquet(path)
    bp, interval_ms = params.backtest, params.data.interval_ms
    t0 = time.perf_counter()
    res = run_backtest(pred, bp, interval_ms)
    close = pred["close"].to_numpy(dtype="float64")
    metrics = performance(res.equity, bp.initial_equity, res.summary, interval_ms, close)

    grid = bp.sweep_grid()
    figures, table = [], pd.DataFrame()
    if grid:
        equities, summaries = run_sweep(pred, bp, grid, interval_ms)
        rows = sweep_table(equities, summaries, bp.initial_equity, interval_ms, close)
        table = pd.concat([pd.DataFrame(grid), pd.DataFrame(rows)], axis=1).sort_values("total_return", ascending=False)
        best = table.iloc[0]
        metrics["sweep"] = {"combinations": len(grid), "best_total_return": float(best["total_return"]),
                            "best_sharpe": float(table["sharpe"].max()),
                            "best": {k: (v.item() if hasattr(v, "item") else v) for k, v in best[list(grid[0])].items()}}
        main = next((i for i, g in enumerate(grid) if all(getattr(bp, k) == v for k, v in g.items())), None)
        figures.append(equity_curves_figure(pred["open_time"], equities, [combo_label(g) for g in grid], main))
        varied = [k for k in grid[0] if len({g[k] for g in grid}) > 1]
        if len(varied) == 2:
            figures.append(heatmap_figure(table, varied[0], varied[1], "total_return"))
            figures.append(heatmap_figure(table, varied[0], varied[1], "sharpe"))
    secs = time.perf_counter() - t0

    out = Path(args.out_dir)
    write_html(strategy_figure(pred, res.equity, res.trades, bp.initial_equity,
                               f"Strategy: threshold {bp.threshold}, leverage {bp.leverage}, order size {bp.order_size}, "
                               f"pyramid {bp.pyramid_max}, {bp.entry} entries — total return {metrics['total_return']:+.2%} "
                               f"vs buy-and-hold {metrics['buy_hold_return']:+.2%}"), out / "strategy.html")
    if grid:
        write_comparison(out / "comparison.html", figures, table, f"Strategy comparison: {len(grid)} combinations")
        with atomic_path(out / "sweep.csv") as tmp:
            table.to_csv(tmp, index=False)
    with atomic_path(args.trades) as tmp:
        res.trades.to_csv(tmp, index=False)
    curve = pd.DataFrame({"time": pred["open_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "equity": res.equity,
                          "buy_hold": bp.initial_equity * close / close[0], "drawdown": drawdown_curve(res.equity)})
    with atomic_path(args.equity) as tmp:
        curve.to_csv(tmp, index=False)
    write_json(args.metrics, json_safe(metrics))
    print(f"backtest: total return {metrics['total_return']:+.2%} (buy-and-hold {metrics['buy_hold_return']:+.2%}), "
          f"Sharpe {metrics['sharpe']:.2f}, max drawdown {metrics['max_drawdown']:.2%}, {metrics['trades']} trades, "
          f"{metrics['liquidations']} liquidations; {len(grid)} sweep combinations; {secs:.2f} s")


def add_args(p):
    p.add_argument("--predictions", default="reports/predictions.parquet")
    p.add_argument("--metrics", default="reports/metrics/backtest.json")
    p.add_argument("--trades", default="reports/trades.csv")
    p.add_argument("--equity", default="reports/plots/equity.csv")
    p.add_argument("--out-dir", default="reports/backtest")


if __name__ == "__main__":
    sys.exit(run_stage("backtest", __doc__, body, add_args))
