"""Backtest metrics, sweeps and charts."""

import numpy as np
import pandas as pd
import pytest

from mlrisk.backtest import engine as E
import json
import re

from mlrisk.report.backtest_charts import equity_curves_figure, equity_figure, heatmap_figure, price_trades_figure
from mlrisk.report.html import data_table
from mlrisk.backtest.performance import max_drawdown, performance
from mlrisk.backtest.runner import combo_label, run_backtest, run_sweep, sweep_curves, sweep_report
from mlrisk.config.backtest import BacktestParams
from mlrisk.config.params import parse_params

H = 3_600_000


def _pred(n=500, seed=0):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    o = np.r_[100, c[:-1]]
    return pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), "open": o,
                         "high": np.maximum(o, c) * 1.004, "low": np.minimum(o, c) * 0.996, "close": c,
                         "p_up": rng.uniform(0.2, 0.8, n)})


def test_max_drawdown_by_hand():
    assert max_drawdown(np.array([100, 120, 90, 130, 65])) == pytest.approx(-0.5)
    assert max_drawdown(np.array([1, 2, 3])) == 0.0


def test_performance_by_hand():
    eq = np.array([1100.0, 990.0, 1210.0])
    summary = np.zeros(E.N_SUMMARY)
    summary[[E.S_TRADES, E.S_WINS, E.S_GROSS_PROFIT, E.S_GROSS_LOSS, E.S_FEES, E.S_EXPOSURE]] = [4, 3, 300, 90, 12, 2]
    m = performance(eq, 1000.0, summary, H, np.array([10.0, 9, 12]))
    assert m["total_return"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["win_rate"] == 0.75 and m["profit_factor"] == pytest.approx(300 / 90) and m["expectancy"] == pytest.approx(210 / 4)
    assert m["exposure"] == pytest.approx(2 / 3) and m["buy_hold_return"] == pytest.approx(0.2)
    r = np.array([0.1, -0.1, 2 / 9])  # per-candle returns, the first against the initial equity
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(365 * 24))
    years = 3 / (365 * 24)
    assert m["cagr"] == pytest.approx(1.21 ** (1 / years) - 1)


def test_sweep_equals_single_runs():
    pred = _pred()
    bp = parse_params({"backtest": {"sweep": {"thresholds": [0.05, 0.1, 0.2], "leverages": [1, 5], "entries": ["market", "limit"]}}}).backtest
    grid = bp.sweep_grid()
    assert len(grid) == 12
    equities, summaries = run_sweep(pred, bp, grid, H)
    for i, combo in enumerate(grid):
        single = run_backtest(pred, bp.model_copy(update=combo), H)
        np.testing.assert_array_equal(equities[i], single.equity)
        np.testing.assert_array_equal(summaries[i], single.summary)


def test_strategy_charts_have_price_entries_exits_equity_and_drawdown():
    pred = _pred()
    bp = BacktestParams(threshold=0.1, stop_loss=0.01, take_profit=0.01)
    r = run_backtest(pred, bp, H)
    assert len(r.trades) > 5
    names = {t.name for t in price_trades_figure(pred["open_time"], pred["close"].to_numpy(), r.trades).data}
    assert {"close", "long entry", "short entry"} <= names and any(n.startswith("exit: ") for n in names)
    hold = bp.initial_equity * pred["close"] / pred["close"].iloc[0]
    fig = equity_figure(pred["open_time"], r.equity, hold.to_numpy(), np.minimum(r.equity / np.maximum.accumulate(r.equity) - 1, 0))
    assert [t.name for t in fig.data] == ["strategy equity", "buy-and-hold", "drawdown %"]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.args[0]["yaxis.type"] for b in buttons] == ["linear", "log"]


def test_trade_markers_are_bounded_to_the_largest_pnl():
    pred = _pred(3000)
    r = run_backtest(pred, BacktestParams(threshold=0.01), H)
    assert len(r.trades) > 200
    fig = price_trades_figure(pred["open_time"], pred["close"].to_numpy(), r.trades, max_markers=100)
    entries = sum(len(t.x) for t in fig.data if t.name.endswith("entry"))
    assert entries == 100
    assert r.trades["pnl"].abs().max() in {abs(v) for t in fig.data if t.name.startswith("exit") for v in t.customdata}


def test_comparison_charts_and_sortable_table():
    pred = _pred()
    bp = parse_params({"backtest": {"sweep": {"thresholds": [0.05, 0.1], "leverages": [1, 3, 7]}}}).backtest
    grid = bp.sweep_grid()
    equities, _ = run_sweep(pred, bp, grid, H)
    curves = pd.DataFrame(equities.T, columns=[combo_label(g) for g in grid])
    fig = equity_curves_figure(pred["open_time"], curves, main=combo_label(grid[0]))
    assert len(fig.data) == 6 and max(t.line.width for t in fig.data) == 3
    table = pd.DataFrame([{**g, "total_return": e[-1] / 10000 - 1, "sharpe": 0.0} for g, e in zip(grid, equities)])
    heat = heatmap_figure(table, "threshold", "leverage")
    assert heat.data[0].z.shape == (3, 2)
    html = data_table("sweep-table", table, percent=("total_return",), highlight=2)
    spec = json.loads(re.search(r'id="sweep-table-data">(.*?)</script>', html).group(1))
    assert len(spec["rows"]) == 6 and spec["highlight"] == 2 and spec["pct"] == [False, False, True, False]
    assert html.count("<th>") == len(table.columns) and "sortable" in html


def test_sweep_curves_share_at_most_n_times():
    pred = _pred(5000)
    bp = parse_params({"backtest": {"threshold": 0.1, "sweep": {"thresholds": [0.05, 0.1]}}}).backtest
    sweep = sweep_report(pred, bp, bp.sweep_grid(), H)
    curves = sweep_curves(sweep, pred["open_time"], 600)
    assert len(curves) <= 600 and list(curves.columns) == ["time", "threshold=0.05", "threshold=0.1 (main)"]
    assert curves["time"].iloc[0] == pred["open_time"].iloc[0] and curves["time"].iloc[-1] == pred["open_time"].iloc[-1]
    assert curves["threshold=0.1 (main)"].iloc[-1] == sweep.equities[1, -1]
    assert len(sweep_curves(sweep, pred["open_time"], 10_000)) == 5000


def test_sweep_report_scores_every_combination_and_finds_the_main_one():
    pred = _pred()
    bp = parse_params({"backtest": {"threshold": 0.1, "leverage": 3,
                                    "sweep": {"thresholds": [0.05, 0.1], "leverages": [1, 3, 7]}}}).backtest
    sweep = sweep_report(pred, bp, bp.sweep_grid(), H)
    assert len(sweep.table) == 6 and sweep.varied == ["threshold", "leverage"]
    assert sweep.grid[sweep.main] == {"threshold": 0.1, "leverage": 3}
    main = run_backtest(pred, bp, H)
    np.testing.assert_array_equal(sweep.equities[sweep.main], main.equity)
    returns = sweep.table["total_return"].to_numpy()
    assert (np.diff(returns) <= 0).all()  # best first
    finals = sweep.equities[:, -1] / bp.initial_equity - 1
    assert returns[0] == pytest.approx(finals.max())
    s = sweep.summary()
    assert s["combinations"] == 6 and s["best_total_return"] == pytest.approx(finals.max())
    assert sweep.grid[int(np.argmax(finals))] == s["best"]
