"""The paper broker's candle step: the backtest's own step when no limit binds, and each risk control
(daily loss, drawdown, flatten, position notional, orders per minute), persisted across restarts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlrisk.backtest import engine as E
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.data.sources import load_sample
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot
from mlrisk.live.risk import RiskLimits, update_risk
from mlrisk.live.step import BotState, paper_step
from mlrisk.live.state import RiskState, StateStore

H = 3_600_000
T0 = 1_717_200_000_000 // H * H  # 2024-06-01 00:00 UTC
LOOSE = RiskLimits(0.0, 1.0, 1.0, 1200)


def _prm(**kw) -> np.ndarray:
    return params_vector(BacktestParams(**{"threshold": 0.0, "leverage": 10.0, "order_size": 0.5, "slippage_bps": 0.0,
                                           "fee_rate": 0.0, "sweep": {}, **kw}), H)


def _run(prm, candles, p, limits=LOOSE, risk=None, clock=None, state=None):
    cfg = E.config(prm)
    state = state or BotState.fresh(prm, T0, H)
    risk = risk or RiskState()
    out = []
    for i, (c, q) in enumerate(zip(candles, p)):
        t = state.next_open_ms()
        state, risk, res = paper_step(state, c, t, q, cfg, limits, risk, clock(i) if clock else t + H)
        out.append(res)
    return state, risk, out


def test_without_binding_limits_it_is_the_backtest():
    s = load_sample("BTCUSDT", "1h").iloc[-600:]
    ohlc = [s[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")]
    p = 0.5 + 0.2 * np.sin(np.arange(600) / 7.0)
    p[:5] = np.nan
    prm = _prm(leverage=3.0, order_size=0.2, threshold=0.05, take_profit=0.01, stop_loss=0.01, slippage_bps=1.0,
               fee_rate=0.0005)
    equity, trades = E.run(*ohlc, p, prm)
    state, _, res = _run(prm, list(zip(*ohlc))[:-1], p[:-1])
    cfg = E.config(prm)
    state, risk, last = paper_step(state, tuple(a[-1] for a in ohlc), state.next_open_ms(), p[-1], cfg, LOOSE,
                                   RiskState(), 0, final=True)
    from mlrisk.live.step import flatten

    state, eq_end, tr_end = flatten(state, cfg)
    got = np.concatenate([r.trades for r in res] + [last.trades, tr_end])
    np.testing.assert_array_equal(got, trades)
    np.testing.assert_array_equal([r.equity for r in res] + [last.equity], np.r_[equity[:-1], last.equity])
    assert eq_end == equity[-1]
    assert len(trades) > 10


def _flat(n, px=100.0):
    return [(px, px, px, px)] * n


def test_daily_loss_halts_entries_keeps_exits_and_lifts_next_day():
    prm = _prm()
    limits = RiskLimits(0.0, 0.05, 1.0, 1200)
    # long from candle 1; candle 3 falls 2 % (x10 leverage x 0.5 size = -10 % equity) and the signal flips short
    candles = _flat(3) + [(100.0, 100.0, 98.0, 98.0)] + _flat(2, 98.0)
    p = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    state, risk, res = _run(prm, candles, p, limits)
    assert not res[2].halted and res[0].orders == [{"leg": "entry", "side": "BUY", "type": "MARKET"}]
    assert res[3].halted and res[3].halt_reason.startswith("daily_loss")
    assert res[3].equity == pytest.approx(9000.0)
    assert [o["leg"] for o in res[3].orders] == ["exit"]                  # the exit stays, the short entry is cancelled
    assert any("halted" in b for b in res[3].blocked)
    assert res[4].position["side"] == "flat" and res[4].orders == [] and res[5].orders == []
    assert risk.halted
    # the next UTC day lifts a daily-loss halt: entries come back
    day = (T0 // 86_400_000 + 1) * 86_400_000
    state.origin_ms = day - (state.account.next_candle) * H  # jump the account's calendar to the next day's first hour
    _, risk2, res2 = _run(prm, _flat(1, 98.0), [0.1], limits, risk=risk, state=state)
    assert not risk2.halted and [o["leg"] for o in res2[0].orders] == ["entry"]


def test_drawdown_halt_persists_and_flatten_on_breach_closes():
    prm = _prm()
    limits = RiskLimits(0.0, 1.0, 0.08, 1200, flatten_on_breach=True)
    candles = _flat(3) + [(100.0, 100.0, 98.0, 98.0)] + _flat(3, 98.0)
    p = [0.9] * 7                                                           # the signal stays long
    state, risk, res = _run(prm, candles, p, limits)
    assert res[3].halted and res[3].halt_reason.startswith("drawdown")
    assert [o["leg"] for o in res[3].orders] == ["exit"] and any("flatten" in b for b in res[3].blocked)
    assert res[4].position["side"] == "flat" and all(r.orders == [] for r in res[4:])
    # still halted on a later day: a drawdown halt needs the operator
    later = RiskState(risk.day_start_ms - 86_400_000, risk.day_start_equity, risk.peak_equity, True, risk.halt_reason)
    assert update_risk(later, 9000.0, 9000.0, T0 + 5 * 86_400_000, limits).halted
    # without flatten_on_breach the position is kept (only entries stop)
    _, _, res = _run(prm, candles, p, RiskLimits(0.0, 1.0, 0.08, 1200))
    assert res[3].halted and res[3].orders == [] and res[6].position["side"] == "long"


def test_daily_loss_counts_open_pnl():
    r = update_risk(RiskState(), 9400.0, 10000.0, T0 + H, RiskLimits(0.0, 0.05, 1.0, 10))
    assert r.halted and "daily_loss" in r.halt_reason and r.day_start_equity == 10000.0 and r.peak_equity == 10000.0


def test_max_position_notional_cancels_an_entry_that_would_exceed_it():
    prm = _prm()  # entry notional = 0.5 x 10000 x 10 = 50,000
    _, _, res = _run(prm, _flat(3), [0.9, 0.9, 0.9], RiskLimits(40_000.0, 1.0, 1.0, 1200))
    assert res[0].orders == [] and "max_position_notional" in res[0].blocked[0]
    assert all(r.position["side"] == "flat" for r in res)
    _, _, res = _run(prm, _flat(3), [0.9, 0.9, 0.9], RiskLimits(60_000.0, 1.0, 1.0, 1200))
    assert res[0].orders and res[2].position["side"] == "long"
    assert res[2].position["qty"] * 100.0 == pytest.approx(50_000.0)


def test_orders_per_minute_cancel_entries_not_exits():
    prm = _prm()
    p = [0.9, 0.9, 0.1, 0.1, 0.9]
    _, _, res = _run(prm, _flat(5), p, RiskLimits(0.0, 1.0, 1.0, 2), clock=lambda i: 1_000)  # all in one minute
    assert [o["leg"] for o in res[0].orders] == ["entry"]
    assert [o["leg"] for o in res[2].orders] == ["exit"] and "orders in a minute" in res[2].blocked[0]
    assert res[4].orders == [] and res[4].position["side"] == "flat"
    # a minute later the budget is back
    _, _, res = _run(prm, _flat(5), p, RiskLimits(0.0, 1.0, 1.0, 2), clock=lambda i: i * 61_000)
    assert [o["leg"] for o in res[2].orders] == ["exit", "entry"]


def test_halt_and_account_survive_a_restart(tmp_path):
    prm = _prm()
    limits = RiskLimits(0.0, 1.0, 0.08, 1200)
    import pandas as pd

    candles = pd.DataFrame({"open_time": pd.to_datetime(T0 + np.arange(6) * H, unit="ms", utc=True),
                            "open": [100.0] * 4 + [98.0] * 2, "high": [100.0] * 6, "low": [100.0] * 3 + [98.0] * 3,
                            "close": [100.0] * 3 + [98.0] * 3, "volume": [1.0] * 6})

    def bot(store):
        return Bot(lambda h: 0.9 if h["close"].iloc[-1] >= 100 else 0.1, 1, 1, prm, H, limits, store, CandleLog(None, None),
                   clock=lambda ms: ms)

    path = tmp_path / "s.sqlite"
    with StateStore(path, symbol="BTCUSDT", interval="1h") as store:
        b = bot(store)
        for i in range(4):
            b.process(candles.iloc[: i + 1])
        assert store.risk().halted and store.last_processed_candle() == T0 + 3 * H
    with StateStore(path, symbol="BTCUSDT", interval="1h") as store:       # a restart
        b = bot(store)
        assert b.process(candles.iloc[:4]) is None                         # a processed candle is never re-traded
        res = b.process(candles.iloc[:5])
        assert res.decision == "short" and res.halted and res.orders == [] and res.position["side"] == "flat"
        assert "halted" in res.blocked[0]
        assert b.state.account.next_candle == 5
        # the long (0.5 x 10,000 x leverage 10 at 100) closed at candle 4's open, 98, by the short signal
        assert len(res.trades) == 1 and res.trades[0, E.T_EXIT_PRICE] == 98.0
        assert res.equity == pytest.approx(10000 - 0.5 * 10000 * 10 / 100 * 2) == res.trades[0, E.T_PNL] + 10000


def test_flatten_on_stop_closes_at_the_last_close_and_is_saved(tmp_path):
    import pandas as pd

    prm = _prm()
    candles = pd.DataFrame({"open_time": pd.to_datetime(T0 + np.arange(4) * H, unit="ms", utc=True),
                            "open": [100.0] * 4, "high": [101.0] * 4, "low": [99.0] * 4,
                            "close": [100.0, 100.0, 100.0, 101.0], "volume": [1.0] * 4})
    path = tmp_path / "s.sqlite"
    with StateStore(path, symbol="BTCUSDT", interval="1h") as store:
        b = Bot(lambda h: 0.9, 1, 1, prm, H, LOOSE, store, CandleLog(None, None))
        for i in range(4):
            b.process(candles.iloc[: i + 1])
        assert b.state.account.account.side == 1
    with StateStore(path, symbol="BTCUSDT", interval="1h") as store:   # after a restart too
        b = Bot(lambda h: 0.9, 1, 1, prm, H, LOOSE, store, CandleLog(None, None))
        equity, trades = b.flatten()
        assert len(trades) == 1 and trades[0, E.T_EXIT_PRICE] == 101.0 and E.EXIT_REASONS[int(trades[0, E.T_REASON])] == "end"
        assert equity == pytest.approx(10000 + 0.5 * 10000 * 10 / 100 * 1.0)
    with StateStore(path, symbol="BTCUSDT", interval="1h") as store:
        saved = BotState.from_blob(store.step_state().data)
        assert saved.account.account.side == 0 and saved.account.account.market_entry == 0
