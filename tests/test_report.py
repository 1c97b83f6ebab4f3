"""The dashboard's numbers and size: portfolio statistics by hand, decimation that keeps extremes,
OHLC aggregation, plotly.js inlined once with nothing fetched, the headline, and a minute-data case
(1,000,000 candles, 150,000 in the test part) that stays under 15 MB."""

from __future__ import annotations

import html
import re
import time

import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from mlrisk.backtest.performance import (drawdown_duration, monthly_returns, portfolio_stats, rolling_sharpe,
                                         trade_stats)
from mlrisk.report.dashboard import build, headline, headline_lines, read_inputs
from mlrisk.report.plotting import aggregate_ohlc, aggregation_factor, minmax_indices
from mlrisk.times import HOUR_MS
from report_inputs import write_report_inputs

PROV = {"git": "abc1234567", "dirty": "true", "params": "p" * 10, "data": "d" * 10, "model": "m" * 10}


def test_monthly_returns_by_hand():
    t = pd.to_datetime(["2024-01-10", "2024-01-31", "2024-02-15", "2024-03-01", "2025-01-02"], utc=True)
    eq = np.array([105.0, 110.0, 99.0, 121.0, 60.5])
    m = monthly_returns(t, eq, 100.0)
    assert m.loc[2024, 1] == pytest.approx(0.10)           # 110 / 100 (initial)
    assert m.loc[2024, 2] == pytest.approx(99 / 110 - 1)
    assert m.loc[2024, 3] == pytest.approx(121 / 99 - 1)
    assert m.loc[2025, 1] == pytest.approx(-0.5)           # against the previous month with data
    assert np.isnan(m.loc[2024, 4]) and list(m.columns) == list(range(1, 13))


def test_drawdown_duration_by_hand():
    t = pd.date_range("2024-01-01", periods=8, freq="h", tz="UTC")
    eq = np.array([100, 110, 105, 100, 111, 90, 95, 100.0])
    # under water from 01:00 to 04:00 (3 h, recovered) and from 04:00 to the end (3 h, open)
    assert drawdown_duration(t, eq) == pd.Timedelta(hours=3)
    assert drawdown_duration(t, np.array([100, 90, 80, 85, 70, 75, 76, 77.0])) == pd.Timedelta(hours=7)
    assert drawdown_duration(t, np.arange(8.0) + 1) == pd.Timedelta(0)


def test_rolling_sharpe_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    eq = 1000 * np.cumprod(1 + rng.normal(0.001, 0.01, 200))
    s = rolling_sharpe(eq, 1000.0, 50, HOUR_MS)
    r = np.diff(np.r_[1000.0, eq]) / np.r_[1000.0, eq][:-1]
    w = r[120:170]
    assert np.isnan(s[:49]).all()
    assert s[169] == pytest.approx(w.mean() / w.std(ddof=1) * np.sqrt(365 * 24))


def test_trade_and_portfolio_stats():
    tr = pd.DataFrame({"entry_time": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 05:00"], utc=True),
                       "exit_time": pd.to_datetime(["2024-01-01 02:00", "2024-01-01 09:00"], utc=True),
                       "return_on_margin": [0.05, -0.02]})
    s = trade_stats(tr)
    assert (s["best_trade"], s["worst_trade"]) == (0.05, -0.02) and s["avg_trade"] == pytest.approx(0.015)
    assert s["avg_trade_duration"] == pd.Timedelta(hours=3)
    t = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")
    keys = ["total_return", "buy_hold_return", "cagr", "max_drawdown", "trades", "win_rate", "profit_factor", "expectancy",
            "sharpe", "sortino", "calmar", "exposure", "fees_paid", "funding_paid", "liquidations", "final_equity"]
    st = portfolio_stats(t, np.linspace(100, 110, 10), tr, {k: 0 for k in keys})
    assert st["period"] == pd.Timedelta(hours=9) and st["start"] == t[0] and st["max_drawdown_duration"] == pd.Timedelta(0)
    assert {"best_trade", "avg_trade_duration", "max_drawdown_duration", "fees_paid", "liquidations"} <= set(st)


def test_minmax_decimation_is_bounded_and_keeps_the_extremes():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=150_000))
    idx = minmax_indices(y, 4000)
    assert len(idx) <= 4000 and (np.diff(idx) > 0).all()
    assert {0, len(y) - 1, int(np.argmin(y)), int(np.argmax(y))} <= set(idx.tolist())
    assert len(minmax_indices(y[:100], 4000)) == 100


def test_ohlc_aggregation():
    df = pd.DataFrame({"open_time": pd.date_range("2024", periods=5, freq="min", tz="UTC"), "open": [1, 2, 3, 4, 5.0],
                       "high": [2, 9, 4, 5, 6.0], "low": [0.5, 1, 0.1, 3, 4.0], "close": [2, 3, 4, 5, 6.0]})
    a = aggregate_ohlc(df, 2)
    assert a[["open", "high", "low", "close"]].values.tolist() == [[1, 9, 0.5, 3], [3, 5, 0.1, 5], [5, 6, 4, 6]]
    assert a["open_time"].tolist() == df["open_time"].iloc[[0, 2, 4]].tolist()
    assert aggregation_factor(150_000, 1500) == 100 and aggregation_factor(1000, 1500) == 1


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    made = write_report_inputs(root, n_test=800)
    return root, made


def test_page_inlines_plotly_once_and_fetches_nothing(small):
    root, made = small
    page = build(read_inputs(root / "reports"), made["params"], PROV, get_plotlyjs())
    assert page.count(get_plotlyjs()[:200]) == 1                    # plotly.js once, in the head
    assert page.index(get_plotlyjs()[:200]) < page.index("</head>")
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"""(href|src)=["']https?://""", page.replace(get_plotlyjs(), ""))
    for section in ("summary", "data", "training", "evaluation", "strategy", "sweep"):
        assert f'<section id="{section}">' in page and f'href="#{section}"' in page
    assert page.count("Plotly.newPlot(") == 10
    assert "abc1234567 (dirty)" in page and html.escape(made["evaluate"]["verdict"]) in page
    assert "threshold=0.05, leverage=3 (main)" in page  # the main parameters' curve, drawn thick
    assert page == build(read_inputs(root / "reports"), made["params"], PROV, get_plotlyjs())  # deterministic


def test_headline_is_rounded_and_ordered(small):
    _, made = small
    h = headline(made["evaluate"], made["backtest"])
    assert list(h)[:5] == ["accuracy", "margin_pp", "return_pct", "sharpe", "max_dd_pct"]
    assert h["return_pct"] == round(100 * made["backtest"]["total_return"], 2)
    assert all(len(repr(v)) <= 8 for v in h.values())
    lines = headline_lines(made["evaluate"], made["backtest"])
    assert lines[0].startswith("test accuracy") and "buy-and-hold" in lines[1] and lines[2].startswith("max drawdown")


def test_a_missing_input_names_the_stage_to_run(small, tmp_path):
    import shutil

    from mlrisk.errors import DataError

    root, _ = small
    shutil.copytree(root / "reports", tmp_path / "reports")
    (tmp_path / "reports/trades.csv").unlink()
    with pytest.raises(DataError, match=r"trades.csv not found: run `dvc repro backtest`"):
        read_inputs(tmp_path / "reports")


@pytest.mark.slow
def test_minute_data_dashboard_stays_small(tmp_path):
    """1,000,000 one-minute candles, 150,000 in the test part: the page stays under 15 MB."""
    made = write_report_inputs(tmp_path, n_test=150_000, n_rows=1_000_000, freq="min", interval="1m", walk_forward=False)
    assert len(made["trades"]) > 1000
    t0 = time.perf_counter()
    page = build(read_inputs(tmp_path / "reports"), made["params"], PROV, get_plotlyjs())
    secs = time.perf_counter() - t0
    size = len(page.encode())
    print(f"minute-data dashboard: {size / 1e6:.1f} MB, built in {secs:.1f} s")
    assert size < 15_000_000, f"{size / 1e6:.1f} MB"
    assert secs < 60
    assert "(100 × 1m)" in page  # candles merged 100 to 1
