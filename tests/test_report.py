"""The dashboard's numbers and size: portfolio statistics by hand, decimation that keeps extremes,
OHLC aggregation, plotly.js inlined once with nothing fetched, the headline, the issue-12 sections
(folds, bootstrap margin, PSR/DSR/PBO, honest selection, holdout, feature distributions) and pages
built from older runs without them, and a minute-data case (1,000,000 candles, 150,000 in the test
part) that stays under 15 MB."""

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
from mlrisk.errors import DataError
from mlrisk.report.dashboard import build, headline, headline_lines, overfitting_sentences, read_inputs
from mlrisk.report.feature_charts import feature_summary, histogram
from mlrisk.report.plotting import aggregate_ohlc, aggregation_factor, minmax_indices
from mlrisk.times import HOUR_MS
from report_inputs import DEAD, FOLDS, write_report_inputs

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


def _read(root):
    return read_inputs(root / "reports", root / "data/processed", root / "models/preprocess.json", root / "holdout.json")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    made = write_report_inputs(root, n_test=800)
    return root, made


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """An older split-mode run: no gbt, no bootstrap, no overfitting or selection, no features, no holdout."""
    root = tmp_path_factory.mktemp("old")
    made = write_report_inputs(root, n_test=800, walk_forward=False, honest=False)
    return root, made


def test_page_inlines_plotly_once_and_fetches_nothing(small):
    root, made = small
    page = build(_read(root), made["params"], PROV, get_plotlyjs())
    assert page.count(get_plotlyjs()[:200]) == 1                    # plotly.js once, in the head
    assert page.index(get_plotlyjs()[:200]) < page.index("</head>")
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"""(href|src)=["']https?://""", page.replace(get_plotlyjs(), ""))
    for section in ("summary", "data", "training", "evaluation", "strategy", "sweep", "holdout"):
        assert f'<section id="{section}">' in page and f'href="#{section}"' in page
    assert page.count("Plotly.newPlot(") == 13          # 11, plus the folds and the features
    assert "abc1234567 (dirty)" in page and html.escape(made["evaluate"]["verdict"]) in page
    assert "threshold=0.05, leverage=3 (main)" in page  # the main parameters' curve, drawn thick
    assert page == build(_read(root), made["params"], PROV, get_plotlyjs())  # deterministic


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_evaluation_shows_folds_gbt_and_the_bootstrap_margin(small):
    root, made = small
    ev = made["evaluate"]
    page = build(_read(root), made["params"], PROV, "")
    text = _text(page)
    assert 'id="fig-folds"' in page and "gbt" in text
    assert f"{FOLDS} folds" in text and "pooled accuracy" in text
    margin = (f"{100 * ev['margin_over_best_baseline']:+.2f} pp, {'' if ev['beats_best_baseline'] else 'not '}significant "
              f"(90 % CI [{100 * ev['margin_ci_low']:+.2f}, {100 * ev['margin_ci_high']:+.2f}] pp, one-sided p = {ev['p_value']:.3g})")
    assert text.count(margin) >= 2                       # the summary and the evaluation section
    assert "paired block bootstrap" in text and "log_loss" in text
    beating = int((pd.read_csv(root / "reports/evaluate/walk_forward.csv")["margin"] > 0).sum())
    assert f"{beating} of {FOLDS} folds are above their best baseline" in text


def test_strategy_shows_psr_dsr_pbo_and_the_honest_selection(small):
    root, made = small
    o, sel = made["backtest"]["overfitting"], made["backtest"]["selection"]
    page = build(_read(root), made["params"], PROV, "")
    assert f"<b>DSR</b>{o['dsr']:,.2f}" in page and f"<b>PBO</b>{o['pbo']:,.2f}" in page   # the summary, beside Sharpe
    text = _text(page)
    assert f"DSR (deflated, {o['trials']} trials)" in text and "PSR (P(true Sharpe > 0))" in text
    assert f"{o['dsr']:,.2f}" in text and f"{o['pbo']:,.2f}" in text
    for sentence in overfitting_sentences(o):
        assert sentence in text
    assert "In-sample selection" in text and "in-sample selection, ranked on the period shown" in text
    assert "Honest selection" in text
    assert f"{sel['rank_on_report_period']} of {sel['combinations']}" in text
    assert ", ".join(f"{k}={v}" for k, v in sel["chosen"].items()) in text


@pytest.fixture(scope="module")
def perp(tmp_path_factory):
    """A perpetual run: funding history, mark prices and brackets, as the backtest stage writes it."""
    root = tmp_path_factory.mktemp("perp")
    made = write_report_inputs(root, n_test=800, futures=True)
    return root, made


def test_strategy_splits_the_pnl_and_shows_funding_at_each_settlement(perp):
    from mlrisk.backtest.costs import pnl_split

    root, made = perp
    bt, trades = made["backtest"], made["trades"]
    split = pnl_split(trades)
    assert split["funding"] != 0 and split["funding"] == pytest.approx(bt["funding_paid"], rel=1e-9)
    page = build(_read(root), made["params"], PROV, "")
    text = _text(page)
    assert 'id="fig-costs"' in page and "Where the P&L came from" in text
    for part, v in (("price P&L", split["price"]), ("fees", -split["fees"]), ("funding", -split["funding"]),
                    ("net P&L", split["net"])):
        assert re.search(rf"{re.escape(part)}\s+{re.escape(f'{v:,.2f}')}\s", text), part
    assert "at each settlement" in page and "realised at each trade" not in page
    assert "Funding from the funding history" in text and "liquidation on the mark price" in text
    assert "Binance's maintenance margin by notional tier" in text and "Lot step 0.001 and minimum notional 100" in text
    # per trade: price P&L = P&L + fees + funding, in the trades table
    import json

    rows = json.loads(re.search(r'id="trades-data">(.*?)</script>', page).group(1))["rows"]
    cols = re.search(r'<div class="datatable" id="trades">.*?<thead><tr>(.*?)</tr>', page).group(1)
    cols = [html.unescape(c) for c in re.findall(r"<th>(.*?)</th>", cols)]
    shown = np.array([r[cols.index("price P&L")] for r in rows])
    want = (trades["pnl"] + trades["entry_fee"] + trades["exit_fee"] + trades["funding"]).to_numpy()[-len(rows):]
    np.testing.assert_allclose(shown, want, rtol=1e-12)


def test_a_spot_run_shows_the_split_funding_realised_at_exit_and_its_fallbacks(small):
    root, made = small
    page = build(_read(root), made["params"], PROV, "")
    text = _text(page)
    assert 'id="fig-costs"' in page and "realised at each trade's exit" in page
    assert "without perpetual inputs: funding at the constant backtest.funding_rate, liquidation on the last price" in text


def test_overfitting_sentences_say_what_the_numbers_mean():
    weak = overfitting_sentences({"psr": 0.9, "dsr": 0.41, "trials": 18, "pbo": 0.6, "splits": 70})
    assert "DSR 0.41: after 18 trials this Sharpe is not distinguishable from the best of 18 noise strategies." in weak
    assert any("more likely overfitting" in t for t in weak)
    strong = overfitting_sentences({"psr": 0.999, "dsr": 0.97, "trials": 6, "pbo": 0.1, "splits": 70})
    assert any("beats what the best of 6 noise" in t for t in strong) and not any("overfitting" in t for t in strong)
    assert overfitting_sentences({}) == []


def test_holdout_section_warns_about_repeated_looks(small, tmp_path):
    import json
    import shutil

    root, made = small
    page = _text(build(_read(root), made["params"], PROV, ""))
    assert page.count("no longer an untouched estimate") == 1          # the 2nd use only
    assert "exp-1" in page and "exp-2" in page
    shutil.copytree(root, tmp_path / "r")
    log = json.loads((tmp_path / "r/holdout.json").read_text())
    (tmp_path / "r/holdout.json").write_text(json.dumps({**log, "uses": log["uses"][:1]}))
    page = build(_read(tmp_path / "r"), made["params"], PROV, "")
    assert '<section id="holdout">' in page and "no longer an untouched estimate" not in page
    (tmp_path / "r/holdout.json").write_text(json.dumps({"version": 1, "uses": []}))
    assert '<section id="holdout">' not in build(_read(tmp_path / "r"), made["params"], PROV, "")
    (tmp_path / "r/holdout.json").write_text("{not json")
    with pytest.raises(DataError, match=r"holdout.json: not valid JSON .*git checkout"):
        _read(tmp_path / "r")


def test_feature_distributions_flag_the_dead_feature(small, tmp_path):
    import json
    import shutil

    root, made = small
    page = build(_read(root), made["params"], PROV, "")
    assert 'id="fig-features"' in page
    text = _text(page)
    assert f"Feature {DEAD} barely moves on the test part" in text
    assert sum(f"Feature {f} " in text for f in made["params"].features.names) == 1   # only the dead one
    shutil.copytree(root, tmp_path / "r")
    spec = json.loads((tmp_path / "r/models/preprocess.json").read_text())
    (tmp_path / "r/models/preprocess.json").write_text(json.dumps({**spec, "features": spec["features"] + ["no_such"]}))
    with pytest.raises(DataError, match=r"lacks features listed in .*dvc repro preprocess"):
        _read(tmp_path / "r")


def test_feature_summary_and_histogram_by_hand():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"ok": rng.normal(size=2000), "dead": rng.normal(size=2000), "wild": rng.normal(size=2000)})
    test = pd.DataFrame({"ok": rng.normal(size=500), "dead": rng.uniform(-0.03, 0.03, 500), "wild": 20 * rng.normal(size=500)})
    s = feature_summary(train, test, ["ok", "dead", "wild"]).set_index("feature")
    assert s["flag"].to_dict() == {"ok": "", "dead": "dead", "wild": "wild"}
    assert s.loc["dead", "test_std"] == pytest.approx(test["dead"].std(ddof=0))
    assert s.loc["dead", "test_q99"] <= 0.03
    edges, a, b = histogram(train["ok"].to_numpy(), test["ok"].to_numpy(), bins=20)
    assert len(edges) == 21 and (a * np.diff(edges)).sum() == pytest.approx(1) and (b * np.diff(edges)).sum() == pytest.approx(1)


def test_an_older_run_without_the_new_fields_still_builds(old):
    root, made = old
    assert not (root / "holdout.json").exists() and not (root / "data/processed").exists()
    page = build(_read(root), made["params"], PROV, get_plotlyjs())
    assert page.count("Plotly.newPlot(") == 11
    for absent in ('id="fig-folds"', 'id="fig-features"', '<section id="holdout">', "PSR", "Honest selection"):
        assert absent not in page
    text = _text(page)
    assert "test accuracy" in text and f"{100 * made['evaluate']['margin_over_best_baseline']:+.2f} pp" in text


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
    assert (tmp_path / "holdout.json").exists()
    assert len(made["trades"]) > 1000
    t0 = time.perf_counter()
    page = build(_read(tmp_path), made["params"], PROV, get_plotlyjs())
    secs = time.perf_counter() - t0
    size = len(page.encode())
    print(f"minute-data dashboard: {size / 1e6:.1f} MB, built in {secs:.1f} s")
    assert size < 15_000_000, f"{size / 1e6:.1f} MB"
    assert "(100 × 1m)" in page  # candles merged 100 to 1
