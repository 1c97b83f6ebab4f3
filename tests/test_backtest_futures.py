"""The engine on perpetual futures: funding from history, liquidation on the mark price, maintenance
brackets and the lot step. Hand-computed cases (each fails under a mutation of its rule), the
per-candle funding helper, the shipped snapshots, and the plain-Python oracle on random cases."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest_reference import random_prices, reference_backtest
from mlrisk.backtest import engine as E
from mlrisk.backtest.futures import brackets_array, funding_per_candle, load_brackets, lot_filters
from mlrisk.backtest.runner import params_vector, run_backtest
from mlrisk.config.backtest import BacktestParams
from mlrisk.errors import DataError
from mlrisk.exchange_filters import floor_qty, floor_to, to_decimal
from mlrisk.strategy import liquidation_price, maintenance_bracket

H = 3_600_000
EXAMPLES = int(os.environ.get("MLRISK_HYPOTHESIS_EXAMPLES", "150"))
BASE = dict(initial_equity=1000.0, threshold=0.1, leverage=1.0, order_size=0.5, pyramid_max=1, entry="market",
            fee_rate=0.0, maker_fee_rate=0.0, slippage_bps=0.0, maintenance_margin_rate=0.0, min_notional=0.0)


def frame(o, h, lo, c, p, mark=None, funding=None) -> pd.DataFrame:
    n = len(c)
    df = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                       "open": np.asarray(o, float), "high": np.asarray(h, float), "low": np.asarray(lo, float),
                       "close": np.asarray(c, float), "p_up": np.asarray(p, float)})
    if mark is not None:
        m = np.asarray(mark, float)
        df["mark_open"], df["mark_high"], df["mark_low"] = m[:, 0], m[:, 1], m[:, 2]
    if funding is not None:
        df["funding_rate"] = np.asarray(funding, float)
    return df


def bt(df: pd.DataFrame, brackets=None, **kw):
    return run_backtest(df, BacktestParams(**{**BASE, **kw}), H, brackets)


def flat(n: int, p0: float = 0.9) -> tuple[list, list, list, list, list]:
    return [100.0] * n, [101.0] * n, [99.0] * n, [100.0] * n, [p0] + [0.5] * (n - 1)


# ---------------------------------------------------------------- funding from history
@pytest.mark.parametrize("p0, side", [(0.9, 1), (0.1, -1)])
def test_funding_history_is_charged_at_the_open_on_the_mark_open_longs_pay(p0, side):
    o, h, lo, c, p = flat(6, p0)
    mark = [(100.0, 101.0, 99.0)] * 6
    mark[3] = (104.0, 105.0, 103.0)          # the mark open at the settlement differs from the last price
    funding = [0.0, 0.0, 0.0, 0.001, 0.0, 0.0]
    r = bt(frame(o, h, lo, c, p, mark, funding), funding_rate=0.05)  # the constant is ignored with a history
    t = r.trades.iloc[0]
    qty = 500 / 100
    assert t.funding == pytest.approx(side * 0.001 * qty * 104.0, rel=1e-12)  # longs pay, shorts receive
    assert t.pnl == pytest.approx(-t.funding, rel=1e-12)
    assert r.equity[2] == pytest.approx(1000.0) and r.equity[3] == pytest.approx(1000 - t.funding, rel=1e-12)
    assert r.sources["funding"] == "history"


def test_funding_at_an_open_charges_the_position_held_into_it_not_the_one_opened_there():
    # signal long at close 0 -> entry at open 1; signal short at close 2 -> exit at open 3 (and a short entry)
    o, h, lo, c, _ = flat(5)
    p = [0.9, 0.5, 0.1, 0.5, 0.5]
    r = bt(frame(o, h, lo, c, p, funding=[0.0, 0.01, 0.0, 0.02, 0.0]), direction="long")
    t = r.trades.iloc[0]
    # the settlement at open 1 is before the entry fills there: not charged; open 3's is charged before the exit
    assert (t.entry_candle, t.exit_candle) == (1, 3)
    assert t.funding == pytest.approx(0.02 * 5 * 100, rel=1e-12)


def test_without_history_the_constant_rate_stays():
    o, h, lo, c, p = flat(10)
    r = bt(frame(o, h, lo, c, p), funding_rate=0.0008)
    assert r.trades.iloc[0].funding == pytest.approx(0.0001 * 500 * 9, rel=1e-9)
    assert r.sources == {"funding": "constant", "liquidation": "last", "last_price_candles": 10,
                         "maintenance": "constant"}


def test_funding_per_candle_rounds_the_jitter_down_and_charges_later_settlements_at_the_next_open():
    opens = np.arange(6) * H + 1_000 * H
    ft = np.array([opens[1] + 23, opens[3], opens[3] + 4, opens[5] + H + 2, opens[0] - H + 5])
    rates = np.array([1e-4, 2e-4, 3e-4, 9e-4, 7e-4])
    got = funding_per_candle(opens, ft, rates, H)
    # opens[1]+23 ms -> candle 1; two at candle 3 add up; one at the hour after the last candle: no
    # open, dropped; one before the data: dropped
    np.testing.assert_allclose(got, [0, 1e-4, 0, 5e-4, 0, 0], rtol=0, atol=1e-18)


def test_funding_per_candle_and_the_data_checks_share_one_jitter_rule():
    """A settlement stamped up to MAX_JITTER_MS (60 s, Binance's documented deviation) past its hour is
    that hour's: the data layer keys it there, and the backtest charges it at that hour's open, not the
    next one; from MAX_JITTER_MS on it is no settlement time for both."""
    from mlrisk.data import derivatives as dv

    opens = np.arange(4) * H + 1_000 * H
    late_ok = opens[1] + dv.MAX_JITTER_MS - 1
    table, _ = dv.validate_funding(dv.funding_from_raw([opens[0] + 5_000, late_ok], ["0.0001", "0.0002"]))
    assert (table["funding_time"].astype("int64") == opens[:2]).all()
    got = funding_per_candle(opens, table["funding_time_raw"].astype("int64").to_numpy(), table["funding_rate"].to_numpy(), H)
    np.testing.assert_allclose(got, [1e-4, 2e-4, 0, 0], rtol=0, atol=1e-18)
    for bad in (opens[2] + dv.MAX_JITTER_MS, opens[2] + 1_800_000):
        with pytest.raises(DataError, match="s past the hour: not a Binance settlement time"):
            funding_per_candle(opens, np.array([bad]), np.array([1e-4]), H)
        with pytest.raises(DataError, match="s past the hour: not a Binance settlement time"):
            dv.validate_funding(dv.funding_from_raw([bad], ["0.0001"]))


def test_funding_per_candle_on_daily_candles_and_gaps():
    day = 24 * H
    opens = np.array([0, day, 3 * day])  # day 2 missing
    eight = 8 * H
    ft = np.array([0 + 5, eight, 2 * eight, day + 7, day + eight, 2 * day + eight])
    r = np.array([1, 2, 4, 8, 16, 32]) * 1e-5
    got = funding_per_candle(opens, ft, r, day)
    # day 0: its 00:00 settlement at its open; 08:00 and 16:00 at day 1's open with day 1's own 00:00;
    # day 1's 08:00 and the gap day's 08:00 at the first open after them (day 3)
    np.testing.assert_allclose(got, [1e-5, (2 + 4 + 8) * 1e-5, (16 + 32) * 1e-5], rtol=1e-12)


def test_funding_per_candle_on_the_real_history_puts_each_settlement_at_its_hour():
    from mlrisk.data.derivatives import load_futures_sample   # the shipped real BTCUSDT perpetual sample

    perp, _, funding = load_futures_sample("BTCUSDT", "1h")
    opens = perp.open_time.astype("int64").to_numpy()
    raw = funding.funding_time_raw.astype("int64").to_numpy()
    rates = funding.funding_rate.to_numpy()
    assert (raw % H != 0).any()                                  # the real settlement times carry their jitter
    got = funding_per_candle(opens, raw, rates, H)
    want = pd.Series(0.0, index=opens)
    want[(raw // H) * H] = rates
    np.testing.assert_array_equal(got, want.to_numpy())
    assert (got != 0).sum() == len(rates) - (rates == 0).sum()


# ---------------------------------------------------------------- liquidation on the mark price
def _liq_case(mark_low2: float, last_low2: float):
    o, h, lo, c, p = [100, 100, 95, 95], [101, 101, 96, 96], [99, 99, last_low2, 94.9], [100, 100, 95, 95], [0.9, 0.5, 0.5, 0.5]
    mark = [(100, 101, 99), (100, 101, 99), (95, 96, mark_low2), (95, 96, 94.9)]
    return frame(o, h, lo, c, p, mark)


@pytest.mark.parametrize("mark_low2, last_low2, liquidated", [(90.0, 91.0, True), (91.0, 90.0, False)])
def test_liquidation_watches_the_mark_candle_not_the_last_price(mark_low2, last_low2, liquidated):
    r = bt(_liq_case(mark_low2, last_low2), leverage=10.0, maintenance_margin_rate=0.005)
    liq = (50 * 100 - 500) / (50 * (1 - 0.005))  # 90.4523
    t = r.trades.iloc[0]
    assert (t.exit_reason == "liquidation") == liquidated
    if liquidated:
        assert t.exit_candle == 2 and t.exit_price == pytest.approx(liq, rel=1e-12)
    assert r.sources["liquidation"] == "mark"


def test_a_mark_row_with_nan_falls_back_to_the_last_price():
    df = _liq_case(91.0, 90.0)
    df.loc[2, "mark_low"] = np.nan
    r = bt(df, leverage=10.0, maintenance_margin_rate=0.005)
    assert r.trades.iloc[0].exit_reason == "liquidation"
    assert r.sources["liquidation"] == "mark+last" and r.sources["last_price_candles"] == 1


def test_a_mark_open_beyond_the_liquidation_price_liquidates_at_the_open():
    df = _liq_case(91.0, 91.0)
    df.loc[2, ["mark_open", "mark_low"]] = [90.0, 89.0]  # the last open (95) is far from it
    t = bt(df, leverage=10.0, maintenance_margin_rate=0.005).trades.iloc[0]
    assert t.exit_reason == "liquidation" and t.exit_candle == 2


@pytest.mark.parametrize("rate, low2, liquidated", [(0.01, 91.0, True), (0.0, 91.0, False),
                                                     (-0.01, 90.0, False), (0.0, 90.0, True)])
def test_funding_is_paid_from_the_isolated_margin_and_moves_the_liquidation_price(rate, low2, liquidated):
    # 10x long, 50 units at 100 on 500 margin, mmr 0.005: liquidation at (5000 - 500)/49.75 = 90.45 without
    # funding; paying 0.01 (50 USDT) from the isolated wallet leaves 450 -> 91.46; receiving it -> 89.45
    df = frame([100.0] * 4, [101.0] * 4, [99.0, 99.0, low2, 99.0], [100.0] * 4, [0.9, 0.5, 0.5, 0.5],
               funding=[0.0, 0.0, rate, 0.0])
    r = bt(df, leverage=10.0, maintenance_margin_rate=0.005)
    t = r.trades.iloc[0]
    paid = rate * 50 * 100
    assert t.funding == pytest.approx(paid, rel=1e-12)
    assert (t.exit_reason == "liquidation") == liquidated
    if liquidated:
        assert t.exit_candle == 2 and t.exit_price == pytest.approx((5000 - (500 - paid)) / 49.75, rel=1e-12)
        # the position loses its posted margin, the funding paid from it included: -500, not -500 - funding
        assert t.pnl == pytest.approx(-500.0, rel=1e-12) and r.equity[2] == pytest.approx(500.0, rel=1e-12)
    else:
        assert r.equity[2] == pytest.approx(1000 - paid + 50 * (100 - 100), rel=1e-12)


def test_funding_paid_from_the_isolated_margin_leaves_the_free_balance_for_the_next_entry():
    # pyramiding: the second entry's margin is order_size x (equity - isolated wallet), which funding
    # paid from the isolated wallet does not change (Binance's available balance excludes it)
    o, h, lo, c = [100.0] * 5, [101.0] * 5, [99.0] * 5, [100.0] * 5
    df = frame(o, h, lo, c, [0.9, 0.9, 0.5, 0.5, 0.5], funding=[0.0, 0.0, 0.01, 0.0, 0.0])
    r = bt(df, pyramid_max=2)
    first, second = r.trades.iloc[0], r.trades.iloc[1]
    assert first.margin == pytest.approx(500.0) and first.funding == pytest.approx(0.01 * 5 * 100)
    assert second.entry_candle == 2 and second.margin == pytest.approx(0.5 * (1000 - 500), rel=1e-12)


# ---------------------------------------------------------------- maintenance brackets
TIERS = brackets_array([{"notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0},
                        {"notionalFloor": 5000, "maintMarginRatio": 0.05, "cum": 230},
                        {"notionalFloor": 50000, "maintMarginRatio": 0.1, "cum": 2730}])


@pytest.mark.parametrize("notional, want", [(0.0, (0.004, 0.0)), (4999.99, (0.004, 0.0)), (5000.0, (0.05, 230.0)),
                                            (49999.0, (0.05, 230.0)), (50000.0, (0.1, 2730.0)), (1e9, (0.1, 2730.0))])
def test_the_tier_is_chosen_by_notional(notional, want):
    assert maintenance_bracket(notional, TIERS, 0.3) == pytest.approx(want)
    assert maintenance_bracket(notional, np.empty((0, 3)), 0.3) == (0.3, 0.0)


def test_liquidation_price_with_a_tier_is_binances_isolated_formula():
    q, ep, m, mmr, cum = 0.5, 60_000.0, 3_000.0, 0.005, 50.0
    for side in (1, -1):
        want = (m + cum - side * q * ep) / (q * mmr - side * q)
        assert liquidation_price(side, q, ep, m, mmr, cum) == pytest.approx(want, rel=1e-12)
        # at that price, margin plus unrealised P&L equals the maintenance margin Q * LP * MMR - cum
        assert m + side * q * (want - ep) == pytest.approx(q * want * mmr - cum, rel=1e-9)


@pytest.mark.parametrize("low2, liquidated", [(89.8, True), (90.0, False)])
def test_a_position_in_the_second_tier_liquidates_at_the_tier_price(low2, liquidated):
    # 10x on 500 margin = 5000 notional: tier 2 (mmr 0.05, cum 230) -> 89.89; tier 1 would give 90.36 and
    # the flat rate (0.02 here) 91.84: a low of 90 liquidates under either, not under tier 2
    df = frame([100, 100, 97, 97], [101, 101, 98, 98], [99, 99, low2, 96], [100, 100, 97, 97], [0.9, 0.5, 0.5, 0.5])
    r = bt(df, brackets=TIERS, leverage=10.0, maintenance_margin_rate=0.02)
    liq = (50 * 100 - 500 - 230) / (50 * (1 - 0.05))
    t = r.trades.iloc[0]
    assert r.sources["maintenance"] == "brackets"
    if liquidated:
        assert t.exit_reason == "liquidation" and t.exit_price == pytest.approx(liq, rel=1e-12)
    else:
        assert t.exit_reason == "end"


def test_the_shipped_brackets_are_binances_btcusdt_tiers_and_continuous():
    b = load_brackets("BTCUSDT")
    assert b[:3].tolist() == [[0.0, 0.004, 0.0], [50_000.0, 0.005, 50.0], [600_000.0, 0.0065, 950.0]]
    # Binance's maintenance amount makes the maintenance margin continuous across tiers
    for r in range(1, len(b)):
        assert b[r, 2] == pytest.approx(b[r - 1, 2] + b[r, 0] * (b[r, 1] - b[r - 1, 1]), rel=1e-12)
    with pytest.raises(DataError, match="XYZUSDT is not in"):
        load_brackets("XYZUSDT")
    with pytest.raises(DataError, match="start at 0"):
        brackets_array([{"notionalFloor": 10, "maintMarginRatio": 0.01, "cum": 0}])


# ---------------------------------------------------------------- lot step and minimum notional
def test_quantities_are_rounded_down_to_the_lot_step():
    o, h, lo, c, p = flat(4)
    o = [100.0, 103.0, 103.0, 103.0]
    t = bt(frame(o, h, lo, c, p), lot_step=0.1, leverage=1.0).trades.iloc[0]
    # 500 / 103 = 4.854 -> 4.8; the margin follows the rounded notional
    assert t.qty == pytest.approx(4.8, rel=1e-15) and t.margin == pytest.approx(4.8 * 103, rel=1e-12)
    assert bt(frame(o, h, lo, c, p), lot_step=0.0).trades.iloc[0].qty == pytest.approx(500 / 103, rel=1e-15)


def test_an_entry_whose_rounded_notional_is_under_the_minimum_is_skipped():
    o, h, lo, c, p = flat(4)
    # 500 notional at 100 is 5 units; step 3 rounds it to 3 (300 notional): under a 400 minimum, skipped
    assert bt(frame(o, h, lo, c, p), lot_step=3.0, min_notional=400.0).trades.empty
    assert bt(frame(o, h, lo, c, p), lot_step=3.0, min_notional=300.0).trades.iloc[0].qty == 3.0
    assert bt(frame(o, h, lo, c, p), lot_step=0.0, min_notional=400.0).trades.iloc[0].qty == 5.0


def test_the_compiled_rounding_agrees_with_the_live_bots_decimal_rule():
    rng = np.random.default_rng(3)
    for step in (0.001, 0.00001, 0.1, 1.0, 0.5, 0.0025):
        for q in np.r_[rng.uniform(0, 5, 3000), [0.3, 0.7, 1.1, 2.675, 0.001 * 7]]:
            assert floor_qty(q, step) == float(floor_to(to_decimal(float(q)), to_decimal(step))), (q, step)


def test_the_exchange_info_snapshot_gives_btcusdts_step_and_minimum():
    assert lot_filters("BTCUSDT", "futures", market_orders=True) == (0.001, 100.0)
    assert lot_filters("BTCUSDT", "spot", market_orders=True) == (0.00001, 5.0)
    assert lot_filters("BTCUSDT", "spot", market_orders=False) == (0.00001, 5.0)


def test_bad_market_inputs_are_refused_in_one_line():
    o, h, lo, c, p = flat(4)
    prm = params_vector(BacktestParams(**BASE), H)
    with pytest.raises(ValueError, match="funding: expected 4"):
        E.run(o, h, lo, c, p, prm, funding=np.zeros(3))
    with pytest.raises(ValueError, match="mark prices: expected 4"):
        E.run(o, h, lo, c, p, prm, mark=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="needs all of"):
        bt(frame(o, h, lo, c, p).assign(mark_open=1.0))


# ---------------------------------------------------------------- the oracle on random futures cases
@st.composite
def futures_cases(draw):
    n = draw(st.integers(5, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    vol = draw(st.sampled_from([0.002, 0.01, 0.04]))
    o, h, lo, c, p = random_prices(rng, n, vol)
    mark = None
    if draw(st.booleans()):
        dev = np.exp(rng.normal(0, vol / 3, (n, 3)))  # the mark wanders around the last price
        mark = np.c_[o, h, lo] * dev
        mark[:, 1] = np.maximum(mark[:, 1], mark[:, 0])
        mark[:, 2] = np.minimum(mark[:, 2], mark[:, 0])
        mark[rng.uniform(size=n) < 0.1] = np.nan
    funding = None
    if draw(st.booleans()):
        funding = np.where(rng.uniform(size=n) < 0.3, rng.normal(0.0001, 0.002, n), 0.0)
    brackets = TIERS if draw(st.booleans()) else None
    params = dict(
        initial_equity=1000.0, threshold=draw(st.sampled_from([0.0, 0.05, 0.2])),
        direction=draw(st.sampled_from(["both", "both", "long", "short"])),
        leverage=draw(st.sampled_from([1.0, 3.0, 10.0, 25.0])), order_size=draw(st.sampled_from([0.05, 0.3, 0.5])),
        pyramid_max=draw(st.integers(1, 3)), entry=draw(st.sampled_from(["market", "limit"])),
        limit_offset=draw(st.sampled_from([0.0, 0.002, 0.01])), limit_ttl=draw(st.integers(1, 4)),
        hold=draw(st.sampled_from([0, 1, 3])), take_profit=draw(st.sampled_from([None, 0.005, 0.03])),
        stop_loss=draw(st.sampled_from([None, 0.005, 0.05, 0.3])), exit_check=draw(st.sampled_from(["intrabar", "close"])),
        fee_rate=draw(st.sampled_from([0.0, 0.0005])), maker_fee_rate=0.0002, slippage_bps=draw(st.sampled_from([0.0, 3.0])),
        funding_rate=draw(st.sampled_from([0.0, 0.0001])), maintenance_margin_rate=draw(st.sampled_from([0.0, 0.004])),
        liquidation_fee_rate=draw(st.sampled_from([0.0, 0.002])), min_notional=draw(st.sampled_from([0.0, 5.0, 100.0])),
        lot_step=draw(st.sampled_from([0.0, 0.001, 0.1, 1.0])),
    )
    return frame(o, h, lo, c, p, mark, funding), BacktestParams(**params), brackets


def agree(df: pd.DataFrame, bp: BacktestParams, brackets) -> pd.DataFrame:
    """Run the engine and the oracle on one case and assert they agree (trades and equity to 1e-9)."""
    r = run_backtest(df, bp, H, brackets)
    mark = df[["mark_open", "mark_high", "mark_low"]].to_numpy().tolist() if "mark_open" in df else None
    funding = df.funding_rate.tolist() if "funding_rate" in df else None
    eq, trades = reference_backtest(df.open.tolist(), df.high.tolist(), df.low.tolist(), df.close.tolist(),
                                    df.p_up.tolist(), bp, H, mark, funding,
                                    None if brackets is None else [tuple(b) for b in brackets.tolist()])
    assert len(r.trades) == len(trades)
    for got, want in zip(r.trades.itertuples(), trades):
        assert (got.entry_candle, got.exit_candle, got.exit_reason, got.entry_kind) == \
            (want.entry_candle, want.exit_candle, want.reason, want.entry_kind)
        for a, b in ((got.entry_price, want.entry_price), (got.exit_price, want.exit_price), (got.qty, want.qty),
                     (got.margin, want.margin), (got.pnl, want.pnl), (got.exit_fee, want.exit_fee),
                     (got.funding, want.funding)):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(r.equity, eq, rtol=1e-9, atol=1e-9)
    return r.trades


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(futures_cases())
def test_engine_matches_the_oracle_with_funding_mark_brackets_and_lot_step(case):
    agree(*case)


def _preset_market(n: int = 400, seed: int = 5):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.012, n)))
    o = np.r_[100.0, c[:-1]]
    h, lo = np.maximum(o, c) * 1.006, np.minimum(o, c) * 0.994
    mark = np.c_[o, h * 1.002, lo * 0.997]   # the mark's extremes reach further than the last price's
    funding = np.where(np.arange(n) % 8 == 0, 0.0003, 0.0)
    p = 1 / (1 + np.exp(-np.convolve(rng.normal(size=n + 5), np.full(6, 0.6), "valid")))
    return frame(o, h, lo, c, p, mark, funding)


def test_the_oracle_agrees_on_a_preset_with_funding_a_tiered_mark_liquidation_and_lot_rounding():
    df = _preset_market()
    bp = BacktestParams(**{**BASE, "leverage": 20.0, "order_size": 0.5, "threshold": 0.05, "lot_step": 0.1,
                           "min_notional": 100.0, "maintenance_margin_rate": 0.004, "liquidation_fee_rate": 0.001})
    trades = agree(df, bp, TIERS)
    # the preset does what it claims: funding paid, liquidations, tier-2 notionals, quantities on the step
    assert (trades.funding != 0).any()
    liq = trades[trades.exit_reason == "liquidation"]
    assert len(liq) >= 1 and (liq.notional >= 5000).any()
    assert np.allclose(trades.qty * 10, np.round(trades.qty * 10), rtol=0, atol=1e-9)
    # and at least one of those liquidations happened where the last price alone would not have liquidated
    last_only = run_backtest(df.drop(columns=["mark_open", "mark_high", "mark_low"]), bp, H, TIERS).trades
    assert (last_only.exit_reason == "liquidation").sum() < len(liq)


def test_market_columns_join_funding_at_its_candle_and_leave_missing_mark_candles_nan():
    import pandas as pd
    from mlrisk.backtest.futures import market_columns

    t = pd.date_range("2024-01-01 06:00", periods=4, freq="1h", tz="UTC")
    funding = pd.DataFrame({"funding_time_raw": [pd.Timestamp("2024-01-01 08:00:00.023", tz="UTC")],
                            "funding_rate": [0.0003]})
    mark = pd.DataFrame({"open_time": t[[0, 1, 3]], "open": [1.0, 2.0, 4.0], "high": [1.5, 2.5, 4.5], "low": [0.5, 1.5, 3.5]})
    out = market_columns(pd.Series(t), funding, mark, 3_600_000)
    assert out["funding_rate"].tolist() == [0.0, 0.0, 0.0003, 0.0]  # the 08:00:00.023 settlement at the 08:00 open
    assert out["mark_open"].tolist()[:2] == [1.0, 2.0] and np.isnan(out["mark_high"][2]) and out["mark_low"][3] == 3.5
    assert list(market_columns(pd.Series(t), None, None, 3_600_000).columns) == []
