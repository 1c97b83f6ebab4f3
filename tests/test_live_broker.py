"""The exchange broker against the fake spot exchange (python-binance over HTTP on 127.0.0.1): the
step's orders written ahead then sent, lost and timed-out orders queried by client id (never resent
blindly), reconciliation at start (in-flight orders settled, stale ones never sent late, orders
with the bot's prefix adopted), and a position the exchange cannot explain halting the bot."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pandas as pd
import pytest
from binance.client import Client

from fake_exchange import FakeExchange
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.errors import SettingsError
from mlrisk.exchange import ExchangeClient
from mlrisk.live.execution.base import PositionMismatch
from mlrisk.live.execution.spot import ExchangeBroker
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot
from mlrisk.live.risk import RiskLimits, check_supported
from mlrisk.live.state import OrderStatus, StateStore
from mlrisk.settings import BinanceSettings

H = 3_600_000
T0 = 1_700_000_000_000 // H * H
BP = BacktestParams(threshold=0.1, leverage=1.0, direction="long", order_size=0.2, sweep={})
S = OrderStatus


def _candles(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 40000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[40000.0, close[:-1]]
    return pd.DataFrame({"open_time": pd.to_datetime(T0 + np.arange(n) * H, unit="ms", utc=True), "open": open_,
                         "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
                         "close": close, "volume": np.ones(n)})


def _predict(h: pd.DataFrame) -> float:
    c = h["close"].to_numpy()
    return 0.8 if c[-1] > c[-2] else 0.2


def _exchange(fx: FakeExchange) -> ExchangeClient:
    s = BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=fx.api_secret, timeout_s=0.5)
    return ExchangeClient(s, market="spot", signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)


def _bot(fx: FakeExchange, store: StateStore) -> Bot:
    broker = ExchangeBroker(_exchange(fx), store, "BTCUSDT", "mlr", BP.order_size, BP.min_notional, sleep=lambda s: None)
    return Bot(_predict, 2, 1, params_vector(BP, H), H, RiskLimits(0.0, 1.0, 1.0, 1200), store, CandleLog(None, None),
               broker=broker)


def _run(fx, bot, candles, start=1, stop=None):
    for i in range(start, stop or len(candles)):
        fx.set_price("BTCUSDT", f"{candles['close'].iloc[i]:.2f}")
        bot.process(candles.iloc[: i + 1])


def _store(tmp_path):
    return StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", mode="testnet")


def test_the_steps_orders_are_written_ahead_sent_and_the_positions_agree(tmp_path):
    candles = _candles(40)
    with FakeExchange(balances={"USDT": "10000", "BTC": "0"}) as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        _run(fx, bot, candles)
        orders = store.orders()
        assert len(orders) >= 10 and {o.status for o in orders} == {S.FILLED}
        assert sorted(o["clientOrderId"] for o in fx.orders) == sorted(o.client_order_id for o in orders)
        legs = [o.leg for o in orders]
        assert legs[0] == "entry" and all(a != b for a, b in zip(legs, legs[1:]))  # entry, exit, entry, ...
        free, locked = fx.balance("BTC")
        assert store.position("BTCUSDT").quantity == free + locked
        assert all(store.fills(o.client_order_id) for o in orders)              # fills recorded, with fees
        assert sum(f.commission for f in store.fills()) > 0
        bot.broker.check_position()                                             # explained by the exchange
        # every order is a whole decision of one candle: named by its candle and leg
        assert all(o.client_order_id == make_client_order_id("mlr", "BTCUSDT", o.candle_open_ms, o.leg) for o in orders)


def test_a_lost_response_is_queried_by_client_id_not_resent(tmp_path):
    candles = _candles(6)
    with FakeExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        fault = fx.schedule("lost", method="POST")
        _run(fx, bot, candles)
        assert fault.fired
        first = store.orders()[0]
        assert [e[1] for e in store.events(first.client_order_id)] == ["pending_submit", "unknown", "filled"]
        assert len(fx.orders_with_client_id(first.client_order_id)) == 1
        assert _posts(fx, first.client_order_id) == 1   # queried, not sent a second time
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC"))


def test_a_timeout_that_never_executed_is_cancelled_never_sent_again(tmp_path):
    """Absent from every record until recvWindow + the read-lag allowance, balances unchanged: not
    executed, and NOT sent again (a filled order frees its client id: a resend could fill twice)."""
    candles = _candles(6)
    with FakeExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        fault = fx.schedule("timeout", method="POST", delay_s=1.0)
        _run(fx, bot, candles)
        assert fault.fired
        first = store.orders()[0]
        assert [e[1] for e in store.events(first.client_order_id)] == ["pending_submit", "unknown", "cancelled"]
        assert fx.orders_with_client_id(first.client_order_id) == [] and _posts(fx, first.client_order_id) == 1
        gets = [x for x in fx.signed if x[0] == "GET" and x[2].get("origClientOrderId") == first.client_order_id]
        assert len(gets) >= 2 and all(x[3] == 400 for x in gets)   # queried until the bound, never found


class Crash(BaseException):
    """The process dies (no handler runs)."""


def _posts(fx: FakeExchange, cid: str) -> int:
    """How many order requests with this client id reached the exchange (answered or not)."""
    return sum(1 for r in fx.requests if (r.method, r.path) == ("POST", "/api/v3/order")
               and r.query.get("newClientOrderId") == cid)


@pytest.mark.parametrize("fault, executed", [("lost", True), ("timeout", False)])
def test_an_unknown_outcome_left_by_a_crash_is_queried_at_restart_not_resent(tmp_path, fault, executed):
    """The order's answer is lost (it executed) or it timed out (it did not); the bot dies before it
    could query it. At restart the real broker's reconciliation queries it by client id: a found
    order is recorded; an absent one is cancelled as not executed; neither is ever sent again."""
    candles = _candles(6)
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            bot = _bot(fx, store)
            fx.schedule(fault, method="POST", delay_s=1.0)

            def die(*a, **k):
                raise Crash

            bot.broker.settle = die                      # dies right after recording the outcome as unknown
            with pytest.raises(Crash):
                _run(fx, bot, candles)
            [o] = store.orders()
            assert o.status is S.UNKNOWN and _posts(fx, o.client_order_id) == 1
            assert len(fx.orders_with_client_id(o.client_order_id)) == int(executed)
        with _store(tmp_path) as store:                  # restart
            bot = _bot(fx, store)
            final = "filled" if executed else "cancelled"
            assert bot.broker.reconcile() == [f"{o.client_order_id}: unknown -> {final}"]
            rec = store.order(o.client_order_id)
            assert len(fx.orders_with_client_id(o.client_order_id)) == int(executed)   # at most one order exists
            assert _posts(fx, o.client_order_id) == 1                                   # never sent again
            if executed:
                assert rec.executed_qty == D(fx.orders_with_client_id(o.client_order_id)[0]["executedQty"])
            assert [e[1] for e in store.events(o.client_order_id)][1:] == ["unknown", final]
            assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC"))   # less the fee in BTC
            assert (store.position("BTCUSDT").quantity > 0) == executed and store.orders_to_reconcile() == []


def test_restart_after_a_crash_between_write_ahead_and_send(tmp_path):
    candles = _candles(12)
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            bot = _bot(fx, store)
            bot.broker.send_all = lambda orders: []  # the process dies after the commit, before sending
            _run(fx, bot, candles, 1, 2)
            pending = store.orders([S.PENDING_SUBMIT])
            assert len(pending) == 1 and fx.orders == []
        with _store(tmp_path) as store:  # restart: reconcile sends the decision of the last processed candle
            bot = _bot(fx, store)
            done = bot.broker.reconcile()
            assert done == [f"{pending[0].client_order_id}: pending_submit -> filled"]
            assert len(fx.orders_with_client_id(pending[0].client_order_id)) == 1
            _run(fx, bot, candles, 2, 6)
            bot.broker.send_all = lambda orders: []
            _run(fx, bot, candles, 6, 12)  # decisions written ahead, never sent
            unsent = store.orders([S.PENDING_SUBMIT])
            assert unsent
        with _store(tmp_path) as store:
            bot = _bot(fx, store)
            stale = [o for o in unsent if o.candle_open_ms != store.last_processed_candle()]
            assert stale                                 # there are old decisions to cancel
            bot.broker.reconcile()
            for o in stale:  # an old decision is never sent late
                assert store.order(o.client_order_id).status is S.CANCELLED
                assert fx.orders_with_client_id(o.client_order_id) == []
            assert store.orders_to_reconcile() == []


def test_reconcile_adopts_open_orders_with_the_bots_prefix_and_ignores_others(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        client = Client(fx.api_key, fx.api_secret, ping=False)
        client.API_URL = f"{fx.url}/api"
        ours = make_client_order_id("mlr", "BTCUSDT", T0, "entry")
        for cid in (ours, "manual-order-1"):
            client.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001",
                                price="30000", newClientOrderId=cid)
        bot = _bot(fx, store)
        assert bot.broker.reconcile() == [f"{ours}: adopted (NEW)"]
        rec = store.order(ours)
        assert rec.status is S.OPEN and rec.price == D("30000") and store.order("manual-order-1") is None


def test_a_position_the_exchange_cannot_explain_halts_trading(tmp_path):
    candles = _candles(8)
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            bot = _bot(fx, store)
            _run(fx, bot, candles)
            held = store.position("BTCUSDT").quantity
        if held == 0:  # make sure the bot holds something
            pytest.skip("the synthetic path ended flat")  # pragma: no cover - seed 1 ends long
        fx.balances["BTC"][0] = D(0)  # sold outside the bot
        with _store(tmp_path) as store:
            bot = _bot(fx, store)
            with pytest.raises(PositionMismatch, match="account holds only 0 BTC"):
                bot.broker.reconcile()
            assert store.risk().halted and "position mismatch" in store.risk().halt_reason


@pytest.mark.parametrize("change, words", [
    ({"direction": "both"}, "direction both"), ({"leverage": 3.0}, "leverage 3"), ({"entry": "limit"}, "entry limit"),
    ({"take_profit": 0.01}, "take_profit"), ({"hold": 4}, "hold"),
])
def test_unsupported_strategies_are_refused_in_one_line(change, words):
    with pytest.raises(SettingsError, match=words):
        check_supported(BP.model_copy(update=change), "spot")
    check_supported(BP, "spot")
    check_supported(BP.model_copy(update=change), "futures", max_leverage=3.0)  # futures trade all of these
    with pytest.raises(SettingsError, match="exceeds MLRISK_MAX_LEVERAGE 2"):
        check_supported(BP.model_copy(update={"leverage": 3.0}), "futures", max_leverage=2.0)
    with pytest.raises(SettingsError, match="whole number"):
        check_supported(BP.model_copy(update={"leverage": 2.5}), "futures", max_leverage=3.0)


def test_flatten_on_stop_sells_the_real_position_once(tmp_path):
    candles = _candles(8)
    with FakeExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        _run(fx, bot, candles)
        held = store.position("BTCUSDT").quantity
        assert held > 0
        bot.flatten()
        bot.flatten()  # a second stop request does not sell twice
        cid = make_client_order_id("mlr", "BTCUSDT", store.last_processed_candle(), "flat")
        assert store.order(cid).status is S.FILLED and len(fx.orders_with_client_id(cid)) == 1
        dust = store.position("BTCUSDT").quantity  # below the lot step: cannot be sold, as on Binance
        assert 0 <= dust < bot.broker.filters.step_size and dust == sum(fx.balance("BTC"))
        assert bot.state.account.account.side == 0


def test_the_position_cap_applies_to_the_real_order_size(tmp_path):
    candles = _candles(10)
    with FakeExchange(balances={"USDT": "10000", "BTC": "0"}) as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        bot.broker.max_position_notional = 1500.0  # an entry is 20 % of 10,000 USDT = 2,000
        _run(fx, bot, candles)
        assert fx.orders == [] and store.orders() == []
        bot.broker.max_position_notional = 2500.0
        more = _candles(20)
        _run(fx, bot, more, 10, 20)
        assert fx.orders and all(D(o["cummulativeQuoteQty"]) <= 2500 for o in fx.orders)


def test_loss_limits_measure_the_real_account_in_exchange_mode(tmp_path):
    # the account also holds 1 BTC: an 8 % fall costs it about 7 % of its value, the simulated account
    # (20 % of 10,000 USDT in the trade) under 2 %
    n = 6
    close = np.array([40000.0, 40400.0, 40800.0, 41200.0, 37900.0, 37900.0])
    day = (T0 // 86_400_000 + 1) * 86_400_000  # all within one UTC day
    candles = pd.DataFrame({"open_time": pd.to_datetime(day + np.arange(n) * H, unit="ms", utc=True), "open": close,
                            "high": close, "low": close, "close": close, "volume": np.ones(n)})
    with FakeExchange(balances={"USDT": "10000", "BTC": "1"}) as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        bot.limits = RiskLimits(0.0, 0.03, 1.0, 1200)
        _run(fx, bot, candles)
        risk = store.risk()
        assert risk.halted and risk.halt_reason.startswith("daily_loss")
        assert bot.state.last_equity > 0.98 * 10000  # the simulated account lost too little to trip it
        assert bot.state.last_mark == pytest.approx(bot.broker.equity(37900.0))


def test_a_clock_skew_is_measured_again_and_the_order_sent_once(tmp_path):
    candles = _candles(6)
    with FakeExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store)
        fx.clock_skew_ms = 30_000  # the exchange's clock jumps ahead: our timestamps fall outside recvWindow
        _run(fx, bot, candles)
        first = store.orders()[0]
        assert first.status is S.FILLED and len(fx.orders_with_client_id(first.client_order_id)) == 1
        assert any(x[3] == 400 for x in fx.signed)  # the exchange did refuse a request (-1021) first
        assert abs(bot.broker.exchange.offset_ms - 30_000) < 2_000
