"""Backtest engine: hand-computed expectations, no-lookahead checks, properties and a reference oracle."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest_reference import random_prices, reference_backtest
from mlrisk.backtest.runner import run_backtest
from mlrisk.strategy import decide, signal
from mlrisk.config.backtest import BacktestParams

H = 3_600_000
EXAMPLES = int(os.environ.get("MLRISK_HYPOTHESIS_EXAMPLES", "150"))  # raise for a thorough run
BASE = dict(initial_equity=1000.0, threshold=0.1, leverage=1.0, order_size=0.5, pyramid_max=1, entry="market",
            fee_rate=0.0, maker_fee_rate=0.0, slippage_bps=0.0, maintenance_margin_rate=0.0, min_notional=0.0)


def frame(o, h, lo, c, p) -> pd.DataFrame:
    n = len(c)
    return pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                         "open": np.asarray(o, float), "high": np.asarray(h, float), "low": np.asarray(lo, float),
                         "close": np.asarray(c, float), "p_up": np.asarray(p, float)})


def bt(df: pd.DataFrame, **kw):
    return run_backtest(df, BacktestParams(**{**BASE, **kw}), H)


# ---------------------------------------------------------------- strategy decision
def test_signal_and_decide():
    assert signal(0.58, 0.08) == 1 and signal(0.42, 0.08) == -1 and signal(0.5, 0.08) == 0 and signal(np.nan, 0.0) == 0
    # long signal with an open short and resting short orders: close it, cancel them, add a long
    assert decide(0.9, 0.1, -1, 2, -1, 1, 3) == (1, True, True, True)
    # pyramid full: 2 filled + 1 pending long
    assert decide(0.9, 0.1, 1, 2, 1, 1, 3) == (1, False, False, False)
    assert decide(0.5, 0.1, 1, 1, 0, 0, 3) == (0, False, False, False)
    # long only: a short signal closes the long and cancels, but opens nothing
    assert decide(0.1, 0.1, 1, 1, 1, 1, 3, 1) == (-1, True, True, False)
    assert decide(0.9, 0.1, 0, 0, 0, 0, 3, -1) == (1, False, False, False)


# ---------------------------------------------------------------- hand-computed cases
def test_one_long_trade_with_fees_and_slippage():
    df = frame(o=[100, 100, 105, 110, 110], h=[101, 106, 111, 111, 111], lo=[99, 99, 104, 109, 109],
               c=[100, 105, 110, 110, 110], p=[0.9, 0.5, 0.5, 0.5, 0.5])
    r = bt(df, leverage=2.0, fee_rate=0.001, slippage_bps=10, hold=2)
    entry_px = 100 * 1.001                       # next open, against the trader
    margin, notional = 0.5 * 1000, 0.5 * 1000 * 2
    qty = notional / entry_px
    entry_fee = 0.001 * notional
    exit_px = 110 * (1 - 0.001)                  # hold 2 -> open of candle 3
    exit_fee = 0.001 * qty * exit_px
    pnl = qty * (exit_px - entry_px) - entry_fee - exit_fee
    assert len(r.trades) == 1
    t = r.trades.iloc[0]
    assert (t.side, t.entry_candle, t.exit_candle, t.exit_reason) == ("long", 1, 3, "hold")
    assert t.entry_price == pytest.approx(entry_px, rel=1e-12) and t.exit_price == pytest.approx(exit_px, rel=1e-12)
    assert t.margin == pytest.approx(margin) and t.pnl == pytest.approx(pnl, rel=1e-12)
    assert r.equity[0] == 1000
    assert r.equity[1] == pytest.approx(1000 - entry_fee + qty * (105 - entry_px), rel=1e-12)
    assert r.equity[-1] == pytest.approx(1000 + pnl, rel=1e-12)


def test_long_only_never_shorts():
    df = frame(o=[100, 100, 101, 99, 98, 98], h=[101] * 6, lo=[97] * 6, c=[100, 101, 99, 98, 98, 98], p=[0.9, 0.1, 0.9, 0.1, 0.5, 0.5])
    r = bt(df, direction="long")
    assert (r.trades.side == "long").all() and r.trades.exit_reason.tolist() == ["signal", "signal"]
    assert r.trades.entry_candle.tolist() == [1, 3] and r.trades.exit_candle.tolist() == [2, 4]


def test_a_short_trade():
    df = frame(o=[100, 100, 95, 90, 90], h=[101, 101, 96, 91, 91], lo=[99, 94, 89, 89, 89],
               c=[100, 95, 90, 90, 90], p=[0.1, 0.5, 0.5, 0.5, 0.5])
    r = bt(df, fee_rate=0.001, slippage_bps=10, hold=2)
    entry_px, exit_px = 100 * 0.999, 90 * 1.001
    qty = 500 / entry_px
    pnl = qty * (entry_px - exit_px) - 0.5 - 0.001 * qty * exit_px
    t = r.trades.iloc[0]
    assert t.side == "short" and t.pnl == pytest.approx(pnl, rel=1e-12)
    assert r.equity[-1] == pytest.approx(1000 + pnl, rel=1e-12)


def test_leverage_multiplies_pnl():
    df = frame(o=[100, 100, 103, 104], h=[101, 104, 105, 105], lo=[99, 99, 102, 103], c=[100, 103, 104, 104], p=[0.9, 0.5, 0.5, 0.5])
    pnl1 = bt(df, leverage=1.0, hold=2).trades.pnl.sum()
    pnl4 = bt(df, leverage=4.0, hold=2).trades.pnl.sum()
    assert pnl1 == pytest.approx(500 / 100 * 4)  # 5 BTC... x (104 - 100)
    assert pnl4 == pytest.approx(4 * pnl1, rel=1e-12)


@pytest.mark.parametrize("low2, liquidated", [(90.0, True), (90.5, False)])
def test_liquidation_at_the_right_price(low2, liquidated):
    df = frame(o=[100, 100, 95, 95], h=[101, 101, 96, 96], lo=[99, 99, low2, 94.9], c=[100, 100, 95, 95], p=[0.9, 0.5, 0.5, 0.5])
    r = bt(df, leverage=10.0, maintenance_margin_rate=0.005, liquidation_fee_rate=0.001)
    qty, margin = 5000 / 100, 500
    liq = (qty * 100 - margin) / (qty * (1 - 0.005))  # 90.4523
    assert liq == pytest.approx(90.45226, rel=1e-6)
    t = r.trades.iloc[0]
    if liquidated:
        assert t.exit_reason == "liquidation" and t.exit_candle == 2
        assert t.exit_price == pytest.approx(liq, rel=1e-12)
        fee = 0.001 * qty * liq
        assert t.pnl == pytest.approx(-margin - fee, rel=1e-12)
        assert r.equity[2] == pytest.approx(1000 - margin - fee, rel=1e-12)
    else:
        assert t.exit_reason == "end"


def test_pyramiding_is_capped():
    n = 12
    df = frame(o=[100] * n, h=[101] * n, lo=[99] * n, c=[100] * n, p=[0.9] * n)
    r = bt(df, pyramid_max=3, order_size=0.2)
    assert len(r.trades) == 3 and (r.trades.entry_candle.to_numpy() == [1, 2, 3]).all()
    m = r.trades.margin.to_numpy()  # each entry sizes off the free balance left
    assert m == pytest.approx([200, 160, 128])


def test_threshold_above_every_confidence_gives_no_trades_and_flat_equity():
    rng = np.random.default_rng(0)
    n = 300
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    df = frame(c, c * 1.01, c * 0.99, c, rng.uniform(0.06, 0.94, n))
    r = bt(df, threshold=0.45, fee_rate=0.001)
    assert len(r.trades) == 0 and (r.equity == 1000).all()


def _market_case():
    o = np.array([100, 101, 102, 103, 104.0])
    h, lo, c = o + 2, o - 2, o + 0.5
    p = np.array([0.5, 0.9, 0.5, 0.5, 0.5])  # signal at the close of candle 1
    return o, h, lo, c, p


def test_market_fill_uses_the_next_open_not_the_signal_candle():
    o, h, lo, c, p = _market_case()
    base = bt(frame(o, h, lo, c, p), slippage_bps=5).trades.iloc[0]
    assert base.entry_candle == 2 and base.entry_price == pytest.approx(102 * 1.0005)
    o2 = o.copy()
    o2[2] = 102.7
    moved = bt(frame(o2, h, lo, c, p), slippage_bps=5).trades.iloc[0]
    assert moved.entry_price == pytest.approx(102.7 * 1.0005)
    o3, h3, lo3 = o.copy(), h.copy(), lo.copy()
    o3[1], h3[1], lo3[1] = 90.0, 150.0, 80.0  # the signal candle's own open, high, low
    same = bt(frame(o3, h3, lo3, c, p), slippage_bps=5).trades.iloc[0]
    assert same.entry_price == base.entry_price and same.qty == base.qty


def test_limit_order_never_fills_on_the_candle_that_placed_it():
    # signal at close 0 (100): long limit at 99; candle 0's own low is far below, candle 1 does not trade through
    df = frame(o=[100, 100, 100, 100], h=[101, 101, 101, 101], lo=[90, 99.5, 98.9, 99], c=[100, 100, 100, 100], p=[0.9, 0.5, 0.5, 0.5])
    r = bt(df, entry="limit", limit_offset=0.01, limit_ttl=3)
    t = r.trades.iloc[0]
    assert t.entry_candle == 2 and t.entry_price == pytest.approx(99.0) and t.entry_kind == "limit"
    assert len(bt(df, entry="limit", limit_offset=0.01, limit_ttl=1).trades) == 0  # cancelled after 1 candle
    # a limit exactly at the low does not trade through
    df2 = df.copy()
    df2.loc[2, "low"] = 99.0
    assert bt(df2, entry="limit", limit_offset=0.01, limit_ttl=2).trades.empty


def test_stop_wins_when_stop_and_take_profit_touch_in_one_candle():
    df = frame(o=[100, 100, 100, 100], h=[101, 100.5, 103, 101], lo=[99, 99.5, 97, 99], c=[100, 100, 100, 100], p=[0.9, 0.5, 0.5, 0.5])
    t = bt(df, take_profit=0.02, stop_loss=0.02).trades.iloc[0]
    assert t.exit_reason == "stop_loss" and t.exit_price == pytest.approx(98.0) and t.exit_candle == 2


def test_gap_through_the_stop_fills_at_the_open():
    df = frame(o=[100, 100, 95, 95], h=[101, 100.5, 96, 96], lo=[99, 99.5, 94, 94], c=[100, 100, 95, 95], p=[0.9, 0.5, 0.5, 0.5])
    t = bt(df, stop_loss=0.02).trades.iloc[0]
    assert t.exit_reason == "stop_loss" and t.exit_price == pytest.approx(95.0)


def test_stop_beyond_the_liquidation_price_liquidates_first():
    df = frame(o=[100, 100, 100, 100], h=[101, 101, 101, 101], lo=[99, 99, 70, 99], c=[100, 100, 80, 80], p=[0.9, 0.5, 0.5, 0.5])
    t = bt(df, leverage=5.0, stop_loss=0.3).trades.iloc[0]  # liquidation near 80, stop at 70
    assert t.exit_reason == "liquidation" and t.exit_price == pytest.approx(80.0)


def test_funding_is_paid_by_longs():
    n = 10
    df = frame([100] * n, [101] * n, [99] * n, [100] * n, [0.9] + [0.5] * (n - 1))
    r = bt(df, funding_rate=0.0008)  # per 8 h -> 0.0001 per 1h candle on 500 notional
    t = r.trades.iloc[0]
    assert t.funding == pytest.approx(0.0001 * 500 * 9, rel=1e-9)  # candles 1..9 closes
    assert t.pnl == pytest.approx(-t.funding)


def test_original_preset_on_a_hand_made_path():
    preset = dict(entry="limit", limit_offset=0.001, limit_ttl=3, take_profit=0.01, stop_loss=0.01, exit_check="close",
                  hold=0, fee_rate=0.0005, maker_fee_rate=0.0005, slippage_bps=0.0, leverage=7.0, order_size=0.1,
                  pyramid_max=1, threshold=0.08, maintenance_margin_rate=0.004, min_notional=0.0)
    df = frame(
        o=[100, 100, 100, 101, 101, 102, 102],
        h=[100.5, 100.2, 101.5, 101.2, 101.2, 102.5, 102.5],
        lo=[99.5, 99.8, 99.9, 100.8, 100.9, 101.5, 101.5],
        c=[100, 100, 101, 101, 101.5, 102.2, 102.2],
        p=[0.6, 0.5, 0.5, 0.3, 0.5, 0.5, 0.5],
    )
    r = bt(df, **preset)
    # trade 1: long limit at 99.9 placed at close 0, filled in candle 1 (low 99.8), take-profit at close 2 (101 >= 99.9 * 1.01)
    q1 = 0.1 * 1000 * 7 / 99.9
    pnl1 = q1 * (101 - 99.9) - 0.0005 * 700 - 0.0005 * q1 * 101
    # trade 2: short limit at 101 * 1.001 = 101.101 placed at close 3, filled in candle 4 (high 101.2);
    # stop at close 5 (102.2 >= 101.101 * 1.01 = 102.112)
    eq = 1000 + pnl1
    m2 = 0.1 * eq
    q2 = m2 * 7 / 101.101
    pnl2 = q2 * (101.101 - 102.2) - 0.0005 * m2 * 7 - 0.0005 * q2 * 102.2
    tr = r.trades
    assert tr.exit_reason.tolist() == ["take_profit", "stop_loss"]
    assert tr.entry_candle.tolist() == [1, 4] and tr.exit_candle.tolist() == [2, 5]
    assert tr.entry_price.tolist() == pytest.approx([99.9, 101.101])
    assert tr.pnl.tolist() == pytest.approx([pnl1, pnl2], rel=1e-12)
    assert r.equity[-1] == pytest.approx(1000 + pnl1 + pnl2, rel=1e-12)


def test_equity_never_negative_even_when_everything_is_lost():
    df = frame(o=[100, 100, 10, 10], h=[101, 101, 10, 10], lo=[99, 99, 1, 1], c=[100, 100, 5, 5], p=[0.9, 0.5, 0.5, 0.5])
    r = bt(df, leverage=20.0, order_size=1.0, liquidation_fee_rate=0.05, fee_rate=0.001)
    assert (r.equity >= 0).all() and r.equity[-1] == 0
    assert r.trades.pnl.sum() == pytest.approx(-1000)


# ---------------------------------------------------------------- properties and the oracle
@st.composite
def cases(draw):
    n = draw(st.integers(5, 120))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    vol = draw(st.sampled_from([0.002, 0.01, 0.04]))
    o, h, lo, c, p = random_prices(rng, n, vol)
    params = dict(
        initial_equity=1000.0,
        threshold=draw(st.sampled_from([0.0, 0.05, 0.2])),
        direction=draw(st.sampled_from(["both", "both", "long", "short"])),
        leverage=draw(st.sampled_from([1.0, 3.0, 10.0, 25.0])),
        order_size=draw(st.sampled_from([0.05, 0.3, 0.5])),
        pyramid_max=draw(st.integers(1, 3)),
        entry=draw(st.sampled_from(["market", "limit"])),
        limit_offset=draw(st.sampled_from([0.0, 0.002, 0.01])),
        limit_ttl=draw(st.integers(1, 4)),
        hold=draw(st.sampled_from([0, 1, 3])),
        take_profit=draw(st.sampled_from([None, 0.005, 0.03])),
        stop_loss=draw(st.sampled_from([None, 0.005, 0.05, 0.3])),
        exit_check=draw(st.sampled_from(["intrabar", "close"])),
        fee_rate=draw(st.sampled_from([0.0, 0.0005])),
        maker_fee_rate=0.0002,
        slippage_bps=draw(st.sampled_from([0.0, 3.0])),
        funding_rate=draw(st.sampled_from([0.0, 0.0001, -0.0003])),
        maintenance_margin_rate=draw(st.sampled_from([0.0, 0.004])),
        liquidation_fee_rate=draw(st.sampled_from([0.0, 0.002])),
        min_notional=draw(st.sampled_from([0.0, 5.0])),
    )
    return frame(o, h, lo, c, p), BacktestParams(**params)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_properties_equity_fees_and_pnl(case):
    df, bp = case
    r = run_backtest(df, bp, H)
    assert (r.equity >= 0).all()
    assert (r.trades.entry_fee >= 0).all() and (r.trades.exit_fee >= 0).all()
    assert r.trades.pnl.sum() == pytest.approx(r.equity[-1] - bp.initial_equity, rel=1e-9, abs=1e-7)
    assert (r.trades.entry_candle <= r.trades.exit_candle).all()
    if bp.entry == "limit":
        assert (r.trades.entry_kind == "limit").all()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_engine_matches_the_plain_python_reference(case):
    df, bp = case
    r = run_backtest(df, bp, H)
    eq, trades = reference_backtest(df.open.tolist(), df.high.tolist(), df.low.tolist(), df.close.tolist(),
                                    df.p_up.tolist(), bp, H)
    assert len(r.trades) == len(trades)
    for got, want in zip(r.trades.itertuples(), trades):
        assert (got.entry_candle, got.exit_candle, got.exit_reason, got.entry_kind) == \
            (want.entry_candle, want.exit_candle, want.reason, want.entry_kind)
        assert got.side == ("long" if want.side == 1 else "short")
        for a, b in ((got.entry_price, want.entry_price), (got.exit_price, want.exit_price), (got.qty, want.qty),
                     (got.pnl, want.pnl), (got.exit_fee, want.exit_fee), (got.funding, want.funding)):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(r.equity, eq, rtol=1e-9, atol=1e-9)
