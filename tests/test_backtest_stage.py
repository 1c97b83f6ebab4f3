"""The backtest stage on the traded instrument: prices from data/raw by open time (whatever the
predictions carry), and with data.market futures the funding history, mark-price liquidation, the
maintenance brackets and the exchange's lot filters, said in backtest.json (sources, funding paid, the
P&L split) and in equity.csv (funding paid over time). Real fetch stage on the shipped sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_stage
from mlrisk.backtest.costs import funding_by_candle, pnl_split, trade_costs
from mlrisk.data import derivatives as dv
from mlrisk.io import read_parquet

START = "2024-06-01"


def _params(root: Path, market: str, **backtest) -> None:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update({"market": market, "start": START})
    p["backtest"].update(backtest)
    (root / "params.yaml").write_text(yaml.safe_dump(p))


def _predictions(root: Path, shift: float = 1.0) -> pd.DataFrame:
    """Predictions over the fetched candles (the first 800 the selection period, the rest reported),
    their OHLC scaled by ``shift`` (a model on other candles: the stage must not trade these prices)."""
    raw = read_parquet(root / "data/raw/BTCUSDT-1h.parquet", "")
    rng = np.random.default_rng(3)
    pred = raw[["open_time", "open", "high", "low", "close"]].copy()
    for c in ("open", "high", "low", "close"):
        pred[c] = pred[c] * shift
    pred["p_up"] = np.clip(0.5 + rng.normal(0, 0.12, len(pred)), 0.01, 0.99)
    pred["label"] = 1.0
    (root / "reports").mkdir(exist_ok=True)
    pred.iloc[:800].to_parquet(root / "reports/predictions_select.parquet", index=False)
    pred.iloc[800:].reset_index(drop=True).to_parquet(root / "reports/predictions.parquet", index=False)
    return raw


@pytest.fixture(scope="module")
def futures_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("futures")
    _params(root, "futures")
    r = run_stage("fetch", cwd=root)
    assert r.returncode == 0, r.stderr
    raw = _predictions(root, shift=0.97)
    r = run_stage("backtest", cwd=root)
    assert r.returncode == 0, r.stderr
    bt = json.loads((root / "reports/metrics/backtest.json").read_text())
    trades = pd.read_csv(root / "reports/trades.csv", parse_dates=["entry_time", "exit_time"])
    equity = pd.read_csv(root / "reports/plots/equity.csv")
    return root, raw, bt, trades, equity, r.stdout


def test_futures_backtest_says_which_inputs_it_used(futures_run):
    root, raw, bt, trades, equity, out = futures_run
    s = bt["sources"]
    assert s["funding"] == "history" and s["liquidation"] == "mark" and s["last_price_candles"] == 0
    assert s["maintenance"] == "brackets" and s["brackets_from"].startswith("leverage_brackets.json (2024-10-24)")
    assert s["lot_step"] == {"value": 0.001, "from": s["lot_step"]["from"]} and s["min_notional"]["value"] == 100.0
    assert s["lot_step"]["from"].startswith("exchange_info.json (")
    assert "perpetual: funding history" in out and "liquidation on mark price" in out


def test_prices_come_from_the_traded_candles_not_the_predictions(futures_run):
    root, raw, bt, trades, equity, out = futures_run
    opens = raw.set_index("open_time")["open"]
    market = trades[trades["entry_kind"] == "market"]
    assert len(market) > 10
    # a market entry fills at the perp candle's open plus 1 bps slippage against the trader, not at 0.97 x it
    side = np.where(market["side"] == "long", 1.0, -1.0)
    want = opens.loc[pd.DatetimeIndex(market["entry_time"])].to_numpy() * (1 + side * 1e-4)
    np.testing.assert_allclose(market["entry_price"].to_numpy(), want, rtol=1e-12)


def test_quantities_are_whole_lot_steps_and_entries_at_least_the_min_notional(futures_run):
    root, raw, bt, trades, equity, out = futures_run
    lots = trades["qty"].to_numpy() / 0.001
    np.testing.assert_allclose(lots, np.round(lots), atol=1e-6)
    assert (trades["qty"] * trades["entry_price"] >= 100.0 - 1e-9).all()


def test_funding_paid_is_the_history_charged_on_each_trade(futures_run):
    """Oracle: every settlement whose hour falls in (entry candle, exit candle], on qty x mark open."""
    root, raw, bt, trades, equity, out = futures_run
    funding = dv.load_funding(root / "data/raw/BTCUSDT-funding.parquet").set_index("funding_time")["funding_rate"]
    mark = dv.load_mark(root / "data/raw/BTCUSDT-1h-mark.parquet").set_index("open_time")["open"]
    want = []
    for tr in trades.itertuples():
        hours = funding[(funding.index > tr.entry_time) & (funding.index <= tr.exit_time)]
        side = 1.0 if tr.side == "long" else -1.0
        want.append(sum(rate * tr.qty * mark.loc[t] * side for t, rate in hours.items()))
    np.testing.assert_allclose(trades["funding"].to_numpy(), want, rtol=1e-9, atol=1e-9)
    assert abs(bt["funding_paid"]) > 1.0 and bt["funding_paid"] == pytest.approx(sum(want), rel=1e-9)


def test_the_pnl_split_adds_up_and_funding_over_time_ends_at_the_total(futures_run):
    root, raw, bt, trades, equity, out = futures_run
    p = bt["pnl"]
    # the price P&L from the fills themselves: side x qty x (exit - entry) on every trade not liquidated (a
    # liquidation loses the isolated margin instead), and each such trade's net is that minus its fees and funding
    side = np.where(trades["side"] == "long", 1.0, -1.0)
    gross = side * trades["qty"] * (trades["exit_price"] - trades["entry_price"])
    costs = trades["entry_fee"] + trades["exit_fee"] + trades["funding"]
    ok = (trades["exit_reason"] != "liquidation").to_numpy()
    assert ok.sum() > 10
    np.testing.assert_allclose(gross[ok], (trades["pnl"] + costs)[ok], rtol=1e-9, atol=1e-6)
    assert gross[ok].sum() + (trades["pnl"] + costs)[~ok].sum() == pytest.approx(p["price"], abs=1e-6)
    assert p["net"] == pytest.approx(bt["final_equity"] - 10_000.0, abs=1e-6)
    assert p["fees"] == pytest.approx(bt["fees_paid"], rel=1e-9) and p["funding"] == pytest.approx(bt["funding_paid"], rel=1e-9)
    assert equity["funding_paid"].iloc[-1] == pytest.approx(bt["funding_paid"], rel=1e-9)
    steps = np.diff(np.r_[0.0, equity["funding_paid"].to_numpy()])
    times = pd.to_datetime(equity["time"], utc=True)
    assert set(times[np.abs(steps) > 0].dt.hour) <= {0, 8, 16}  # paid only at settlements


def test_perp_inputs_take_the_snapshots_filters_and_say_when_they_fall_back():
    from mlrisk.backtest.futures import perp_inputs
    from mlrisk.config.backtest import BacktestParams

    bp = BacktestParams(lot_step=0.5, min_notional=7.0)
    got, brackets, src = perp_inputs(bp, "BTCUSDT")
    assert (got.lot_step, got.min_notional) == (0.001, 100.0) and brackets.shape == (12, 3)  # replaced, not kept
    assert got.model_copy(update={"lot_step": 0.5, "min_notional": 7.0}) == bp  # nothing else changes
    got, brackets, src = perp_inputs(bp, "ETHUSDT")  # brackets shipped, exchange info not
    assert (got.lot_step, got.min_notional) == (0.5, 7.0) and brackets is not None
    assert src["lot_step"]["from"].startswith("params") and src["brackets_from"].startswith("leverage_brackets.json")
    got, brackets, src = perp_inputs(bp, "XYZUSDT")
    assert brackets is None and src["brackets_from"].startswith("backtest.maintenance_margin_rate (XYZUSDT is not in")


def test_funding_by_candle_refuses_what_does_not_add_up():
    tr = pd.DataFrame({"side": ["long"], "qty": [2.0], "entry_candle": [0], "exit_candle": [3], "funding": [2 * 0.01 * 100]})
    rate, mark = np.array([0.0, 0.0, 0.01, 0.0]), np.array([np.nan, np.nan, 100.0, np.nan])
    np.testing.assert_allclose(funding_by_candle(tr, rate, mark, np.full(4, 99.0)), [0, 0, 2.0, 0])
    assert funding_by_candle(tr.assign(funding=1.0), rate, mark, np.full(4, 99.0)) is None
    costs = trade_costs(pd.DataFrame({"entry_fee": [1.0], "exit_fee": [2.0], "funding": [-0.5], "pnl": [10.0]}))
    assert costs["price_pnl"].iloc[0] == 12.5  # received funding: the price made less than the net
    assert pnl_split(pd.DataFrame({"entry_fee": [1.0], "exit_fee": [2.0], "funding": [-0.5], "pnl": [10.0]}))["funding"] == -0.5


def test_spot_backtest_has_no_futures_inputs_and_a_missing_candle_is_an_error(tmp_path: Path):
    _params(tmp_path, "spot", direction="long", leverage=1.0, sweep={"thresholds": [0.04, 0.08]})
    assert run_stage("fetch", cwd=tmp_path).returncode == 0
    _predictions(tmp_path)
    r = run_stage("backtest", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bt = json.loads((tmp_path / "reports/metrics/backtest.json").read_text())
    assert not {"sources", "pnl"} & set(bt) and bt["funding_paid"] == 0.0
    assert list(pd.read_csv(tmp_path / "reports/plots/equity.csv").columns) == ["time", "equity", "buy_hold", "drawdown"]
    pred = pd.read_parquet(tmp_path / "reports/predictions.parquet")
    pred.loc[5, "open_time"] = pred.loc[5, "open_time"] + pd.Timedelta(minutes=30)
    pred.to_parquet(tmp_path / "reports/predictions.parquet", index=False)
    r = run_stage("backtest", cwd=tmp_path)
    assert r.returncode == 2 and "1 prediction(s) from 2024-07-04 13:30:00" in r.stderr and "have no candle in data/raw" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_every_perp_candle_in_the_predictions_span_is_stepped(tmp_path):
    """Predictions missing some candles (a model on spot candles across a spot halt): the backtest still
    steps every perp candle between the first and the last prediction, with no signal on the missing
    ones, as the live bot's replay does; a market entry fills at the open right after its decision."""
    _params(tmp_path, "futures")
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    raw = _predictions(tmp_path)
    pred = pd.read_parquet(tmp_path / "reports/predictions.parquet")
    hole = [300, 301, 302, 601]
    pred.loc[[298, 299, 599, 600], "p_up"] = [0.01, 0.99, 0.99, 0.01]  # reversals decided right before the holes
    pred.drop(index=hole).reset_index(drop=True).to_parquet(tmp_path / "reports/predictions.parquet", index=False)
    r = run_stage("backtest", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    equity = pd.read_csv(tmp_path / "reports/plots/equity.csv")
    span = raw["open_time"][(raw["open_time"] >= pred["open_time"].iloc[0]) & (raw["open_time"] <= pred["open_time"].iloc[-1])]
    assert equity["time"].tolist() == span.dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()  # the holes' candles included
    trades = pd.read_csv(tmp_path / "reports/trades.csv", parse_dates=["entry_time"])
    decided = set(pred.drop(index=hole)["open_time"])
    market = trades[trades["entry_kind"] == "market"]
    assert len(market) > 10 and all(t - pd.Timedelta(hours=1) in decided for t in market["entry_time"])
    for i, side in ((300, "long"), (601, "short")):  # filled at the hole's first candle, not after it
        assert ((market["entry_time"] == pred["open_time"].iloc[i]) & (market["side"] == side)).any()
