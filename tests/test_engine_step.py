"""The paper broker's contract: stepping one account candle by candle from Python (with a save and
restore in the middle) gives exactly the compiled backtest's trades and equity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlrisk.backtest import engine as E
from mlrisk.live.sim_account import AccountState
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.config.params import load_params
from mlrisk.data.sources import load_sample
from mlrisk.errors import DataError
from mlrisk.strategy import ENTRY_LIMIT, ENTRY_MARKET, entry_size, order_intents, protective_levels

H = 3_600_000
ROOT = Path(__file__).resolve().parents[1]
PRESET = dict(entry="limit", limit_offset=0.001, limit_ttl=3, take_profit=0.01, stop_loss=0.01, exit_check="close",
              hold=0, fee_rate=0.0005, maker_fee_rate=0.0005, slippage_bps=0.0, leverage=7.0, order_size=0.1,
              pyramid_max=1, threshold=0.08)
PYRAMID = dict(pyramid_max=3, order_size=0.2, leverage=10.0, take_profit=0.004, stop_loss=0.006,
               exit_check="intrabar", funding_rate=0.0003, threshold=0.05, hold=12)
CASES = {
    "default": {},
    "original_preset": PRESET,
    "pyramid_intrabar_funding": PYRAMID,
    "pyramid_limit_intrabar_funding": {**PYRAMID, "entry": "limit", "limit_offset": 0.0005, "limit_ttl": 2},
}


@pytest.fixture(scope="module")
def market() -> list[np.ndarray]:
    """The shipped sample's last 2,600 hourly candles with seeded pseudo-random P(up)."""
    s = load_sample("BTCUSDT", "1h").iloc[-2600:]
    z = np.convolve(np.random.default_rng(7).normal(size=len(s) + 5), np.full(6, 6 ** -0.5), "valid")
    p = 1.0 / (1.0 + np.exp(-0.5 * z))  # centred on 0.5, persistent over a few candles, like a weak model
    return [s[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")] + [p]


def _prm(case: str) -> np.ndarray:
    bp = load_params(ROOT / "params.yaml").backtest.model_copy(update=CASES[case])
    return params_vector(BacktestParams(**bp.model_dump()), H)


def _by_candle(state: AccountState, arrays: list[np.ndarray], cfg: E.Config, t0: int, t1: int,
               equity: list[float], trades: list[np.ndarray]) -> None:
    n = len(arrays[0])
    for t in range(t0, t1):
        eq, tr = state.step(*(float(a[t]) for a in arrays), cfg, final=t == n - 1)
        equity.append(eq)
        trades.append(tr)


@pytest.mark.parametrize("case", list(CASES))
def test_stepping_candle_by_candle_reproduces_the_backtest(market, case):
    prm = _prm(case)
    want_eq, want_tr = E.run(*market, prm)
    assert len(want_tr) > 20  # the case trades
    cfg = E.config(prm)
    n = len(market[0])

    state = AccountState.fresh(prm)
    equity: list[float] = []
    trades: list[np.ndarray] = []
    _by_candle(state, market, cfg, 0, n, equity, trades)
    if state.account.side != 0:
        equity[-1], tr = state.close_out(market[3][-1], cfg)
        trades.append(tr)
    np.testing.assert_array_equal(np.array(equity), want_eq)
    np.testing.assert_array_equal(np.vstack(trades), want_tr)


@pytest.mark.parametrize("case", list(CASES))
def test_saving_and_restoring_mid_way_changes_nothing(market, case):
    prm = _prm(case)
    want_eq, want_tr = E.run(*market, prm)
    cfg = E.config(prm)
    n = len(market[0])
    state = AccountState.fresh(prm)
    equity: list[float] = []
    trades: list[np.ndarray] = []
    # run to a candle where the account holds a position (and, with limit entries, a resting order
    # when one occurs), save it as JSON, rebuild it and go on
    cut = n // 2
    _by_candle(state, market, cfg, 0, cut, equity, trades)
    while state.account.side == 0 or (CASES[case].get("entry") == "limit" and cut < n // 2 + 400
                                      and state.account.n_orders == 0):
        _by_candle(state, market, cfg, cut, cut + 1, equity, trades)
        cut += 1
    assert state.account.side != 0 and cut < n - 1
    saved = json.dumps(state.to_dict())
    before = state.copy()
    state = AccountState.from_dict(json.loads(saved))
    assert state.account == before.account and state.next_candle == cut
    np.testing.assert_array_equal(state.entries, before.entries)
    np.testing.assert_array_equal(state.orders, before.orders)
    _by_candle(state, market, cfg, cut, n, equity, trades)
    if state.account.side != 0:
        equity[-1], tr = state.close_out(market[3][-1], cfg)
        trades.append(tr)
    np.testing.assert_array_equal(np.array(equity), want_eq)
    np.testing.assert_array_equal(np.vstack(trades), want_tr)


def test_restoring_a_bad_state_says_what_is_wrong():
    prm = _prm("default")
    d = AccountState.fresh(prm).to_dict()
    with pytest.raises(DataError, match="version"):
        AccountState.from_dict({**d, "version": 99})
    with pytest.raises(DataError, match="malformed"):
        AccountState.from_dict({**d, "account": {"balance": 1.0}})
    with pytest.raises(DataError, match="do not fit"):
        AccountState.from_dict({**d, "account": {**d["account"], "n_entries": 2}})
    with pytest.raises(DataError, match="pyramid_max"):
        AccountState.from_dict(d).step(100.0, 101.0, 99.0, 100.0, 0.9, E.config(_prm("pyramid_intrabar_funding")))


def test_order_intents_and_levels():
    # long signal, flat, limit entries: one long limit at close * (1 - offset)
    assert order_intents(0.9, 100.0, 0.1, 0, 0, 0, 0, 1, 0, True, 0.01) == (False, False, 1, ENTRY_LIMIT, 99.0)
    # short signal with an open long and resting long orders: close it, cancel them, one short market entry
    assert order_intents(0.1, 100.0, 0.1, 1, 1, 1, 1, 3, 0, False, 0.01) == (True, True, -1, ENTRY_MARKET, 0.0)
    # long only: a short signal only closes
    assert order_intents(0.1, 100.0, 0.1, 1, 1, 0, 0, 3, 1, False, 0.0)[:3] == (True, False, 0)
    assert protective_levels(1, 100.0, 0.02, 0.01) == pytest.approx((102.0, 99.0))
    assert protective_levels(-1, 100.0, 0.02, 0.01) == pytest.approx((98.0, 101.0))
    assert protective_levels(1, 100.0, 0.0, 0.0) == (0.0, 0.0)
    assert entry_size(1000.0, 0.1, 7.0, 5.0) == pytest.approx((100.0, 700.0))
    assert entry_size(1000.0, 0.1, 7.0, 701.0) == (0.0, 0.0) and entry_size(-1.0, 0.1, 7.0, 0.0) == (0.0, 0.0)


def test_stepping_with_funding_mark_and_brackets_reproduces_the_backtest(market):
    """advance_market one candle at a time (what the paper broker will call once it gets funding and
    mark prices) gives exactly the backtest's trades and equity with every futures input in use."""
    from mlrisk.backtest.futures import load_brackets

    prm = _prm("pyramid_intrabar_funding")
    prm[E.P_LOT_STEP] = 0.001
    n = len(market[0])
    mark = np.c_[market[0], market[1] * 1.002, market[2] * 0.998]
    mark[::97] = np.nan
    funding = np.where(np.arange(n) % 8 == 0, 0.0004, 0.0)
    brackets = load_brackets("BTCUSDT")
    want_eq, want_tr = E.run(*market, prm, mark, funding, brackets)
    assert len(want_tr) > 20 and (want_tr[:, E.T_FUNDING] != 0).any()
    cfg = E.config(prm)
    acct, entries, orders = E.fresh_state(prm[E.P_INITIAL], cfg.pyramid_max)
    equity = np.empty(n)
    trades = np.empty((n + 1, E.N_TRADE_FIELDS))
    ntr = 0
    for t in range(n):
        acct, ntr = E.advance_market(acct, entries, orders, t, *(a[t:t + 1] for a in market), mark[t:t + 1],
                                     funding[t:t + 1], brackets, E.lots_for(prm), cfg, t == n - 1, trades, ntr,
                                     equity[t:t + 1])
    if acct.side != 0:
        acct, equity[n - 1], ntr = E.close_out_market(acct, entries, n - 1, market[3][-1], cfg, brackets, trades, ntr)
    np.testing.assert_array_equal(equity, want_eq)
    np.testing.assert_array_equal(trades[:ntr], want_tr)
