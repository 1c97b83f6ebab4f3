"""The spot broker under Binance's documented behaviour (issue 17): the fake's switches
(tests/fake_exchange.py, all off by default) through the real ExchangeClient and ExchangeBroker.

- -1006/-1007 with HTTP 400 or 408, HTTP 408 and 503 "Unknown error" are an UNKNOWN outcome, never
  recorded rejected (errors.md; rest-api.md "HTTP Return Codes");
- an unknown outcome is settled from the order query, allOrders and the balances, polled until
  recvWindow + the read-lag allowance, and NEVER resent (a filled order frees its client id);
  evidence that conflicts halts entries with a line naming the client id;
- a filled order counts with its own executedQty while its trades lag; trades are added when they
  appear; a restart inside a lag window does not halt on a phantom mismatch;
- MARKET partial fill then EXPIRED recorded with the real quantity;
- the position is checked at every close; allOrders/myTrades are read page by page; -2026 archived.

Lags are a few hundred ms of the fake's clock, the bound recvWindow 200 ms + 500 ms read lag.
"""

from __future__ import annotations

import time
from decimal import Decimal as D

import numpy as np
import pandas as pd
import pytest

from fake_exchange import FakeExchange
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.exchange import ExchangeClient
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.execution.base import PositionMismatch
from mlrisk.live.execution.spot import ExchangeBroker
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot
from mlrisk.live.risk import RiskLimits
from mlrisk.live.state import NewOrder, OrderStatus, StateStore
from mlrisk.settings import BinanceSettings

S = OrderStatus
H = 3_600_000
T0 = 1_700_000_000_000 // H * H
RECV_MS, LAG_MS = 200, 500     # the bound: 700 ms
BP = BacktestParams(threshold=0.1, leverage=1.0, direction="long", order_size=0.2, sweep={})


def _exchange(fx: FakeExchange) -> ExchangeClient:
    s = BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=fx.api_secret, timeout_s=0.5)
    return ExchangeClient(s, market="spot", signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)


def _broker(fx: FakeExchange, store: StateStore) -> ExchangeBroker:
    b = ExchangeBroker(_exchange(fx), store, "BTCUSDT", "mlr", BP.order_size, BP.min_notional, recv_window_ms=RECV_MS,
                       sleep=time.sleep)
    b.read_lag_ms = LAG_MS
    return b


def _store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", mode="testnet")


def _order(store: StateStore, side: str = "BUY", qty: str = "0.01", open_ms: int = T0, leg: str = "entry") -> str:
    cid = make_client_order_id("mlr", "BTCUSDT", open_ms, leg)
    store.insert_order(NewOrder(cid, "BTCUSDT", side, "MARKET", D(qty), open_ms, leg))  # type: ignore[arg-type]
    store.commit_candle(open_ms)
    return cid


def _posts(fx: FakeExchange, cid: str) -> int:
    return sum(1 for r in fx.requests if (r.method, r.path) == ("POST", "/api/v3/order")
               and r.query.get("newClientOrderId") == cid)


# ----------------------------------------------------------------------- a. unknown outcome, classified
@pytest.mark.parametrize("status, code, msg, execute", [
    (400, -1007, None, True), (408, -1007, None, True), (400, -1006, None, True), (408, -1006, None, False),
    (400, -1007, None, False), (503, -1000, "Unknown error, please check your request or try again later.", True),
])
def test_an_execution_status_unknown_answer_is_never_recorded_rejected(tmp_path, status, code, msg, execute):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        cid = _order(store)
        kind, opts = ("unknown", {}) if code in (-1006, -1007) else ("error", {"msg": msg})
        fx.schedule(kind, method="POST", status=status, code=code, execute=execute, **opts)
        rec = broker.send(cid)
        assert S.REJECTED not in [e[1] for e in store.events(cid)]
        assert rec.status is (S.FILLED if execute else S.CANCELLED)
        assert _posts(fx, cid) == 1 and len(fx.orders_with_client_id(cid)) == int(execute)
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC"))


def test_the_signed_requests_carry_the_settings_recv_window(tmp_path):
    """python-binance puts recvWindow=10000 on every signed request unless told: the bound must be real."""
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        broker.send(_order(store))
        windows = {p.get("recvWindow") for _, _, p, _ in fx.signed}
        assert windows == {str(RECV_MS)}


# ----------------------------------------------------------------------- b. settlement without resend
def test_an_unknown_outcome_that_executed_behind_a_query_lag_is_found_never_resent(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        fx.query_lag_ms = 400                      # GET order -2013 and allOrders miss it for 400 ms
        cid = _order(store)
        fx.schedule("unknown", method="POST", status=408, execute=True)
        rec = broker.send(cid)
        assert fx.fired["query_lag"] > 0
        assert rec.status is S.FILLED and _posts(fx, cid) == 1 and len(fx.orders_with_client_id(cid)) == 1
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) > 0


def test_an_order_absent_at_the_bound_with_balances_unchanged_is_cancelled_not_resent(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        cid = _order(store)
        fx.schedule("timeout", method="POST", delay_s=1.0)   # never executed, no answer
        t0 = time.monotonic()
        rec = broker.send(cid)
        assert time.monotonic() - t0 >= (RECV_MS + LAG_MS) / 1000 - 0.6   # polled until the bound (less the timeout)
        assert rec.status is S.CANCELLED and "not executed" in rec.reason
        assert _posts(fx, cid) == 1 and fx.orders_with_client_id(cid) == []
        assert not store.risk().halted


def test_conflicting_evidence_fails_closed_naming_the_client_id(tmp_path):
    """Executed, but the order's records lag past the bound: the balance moved, the order cannot be
    found. Not resent, not guessed: entries halt with a line naming the client id."""
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        fx.query_lag_ms = 60_000
        cid = _order(store)
        fx.schedule("unknown", method="POST", status=400, code=-1006, execute=True)
        rec = broker.send(cid)
        assert _posts(fx, cid) == 1 and len(fx.orders_with_client_id(cid)) == 1
        assert rec.status is S.UNKNOWN
        r = store.risk()
        assert r.halted and cid in r.halt_reason and "BTC" in r.halt_reason and "\n" not in r.halt_reason


def test_a_write_ahead_order_sent_before_a_crash_is_found_at_restart_never_resent(tmp_path):
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            broker = _broker(fx, store)
            cid = _order(store)
            fx.query_lag_ms = 400
            broker.venue.place(store.order(cid))      # sent, then the process died before recording it
        with _store(tmp_path) as store:               # restart at once, inside the lag
            broker = _broker(fx, store)
            assert broker.reconcile() == [f"{cid}: pending_submit -> filled"]
            assert _posts(fx, cid) == 1 and len(fx.orders_with_client_id(cid)) == 1
            assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) > 0


# ----------------------------------------------------------------------- c. filled while the trades lag
def test_a_filled_order_counts_its_executed_quantity_while_its_trades_lag(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        fx.trade_lag_ms = 300
        cid = _order(store)
        fx.schedule("lost", method="POST")           # the answer (with its fills) is lost: settled by query
        rec = broker.send(cid)
        assert rec.status is S.FILLED and rec.executed_qty == D("0.01") and rec.cumulative_quote == D("400")
        assert store.position("BTCUSDT").quantity == D("0.01")     # the order's own executedQty, fee not yet known
        time.sleep(0.35)
        broker.check_position()                      # the trades appear: fills and fee added once
        [f] = store.fills(cid)
        assert f.qty == D("0.01") and f.commission_asset == "BTC"
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) == D("0.01") - f.commission
        broker.check_position()
        assert len(store.fills(cid)) == 1 and store.position("BTCUSDT").quantity == sum(fx.balance("BTC"))


def test_a_restart_inside_a_lag_window_does_not_halt_on_a_phantom_mismatch(tmp_path):
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            broker = _broker(fx, store)
            fx.trade_lag_ms = fx.query_lag_ms = 400
            assert broker.send(_order(store)).status is S.FILLED
        with _store(tmp_path) as store:
            broker = _broker(fx, store)
            broker.reconcile()                       # allOrders and myTrades lag: waits, then agrees
            assert not store.risk().halted


# ----------------------------------------------------------------------- d. partial fill then EXPIRED
def test_a_market_order_partly_filled_then_expired_is_recorded_with_its_real_quantity(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        fx.market_fill_fraction = D("0.5")
        cid = _order(store, qty="0.01")
        rec = broker.send(cid)
        assert rec.status is S.CANCELLED and rec.executed_qty == D("0.005")
        assert "INSUFFICIENT_LIQUIDITY" in rec.reason
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) < D("0.005")


# ----------------------------------------------------------------------- e. the position at every close
def _candles(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 40000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[40000.0, close[:-1]]
    return pd.DataFrame({"open_time": pd.to_datetime(T0 + np.arange(n) * H, unit="ms", utc=True), "open": open_,
                         "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
                         "close": close, "volume": np.ones(n)})


def test_spot_checks_its_position_at_every_close(tmp_path):
    candles = _candles(8)
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        broker.sleep = lambda s: None
        bot = Bot(lambda h: 0.2, 2, 1, params_vector(BP, H), H, RiskLimits(0.0, 1.0, 1.0, 1200), store,
                  CandleLog(None, None), broker=broker)
        for i in range(1, 4):
            fx.set_price("BTCUSDT", f"{candles['close'].iloc[i]:.2f}")
            bot.process(candles.iloc[: i + 1])
        # an order with the bot's prefix that the state file never recorded (e.g. sent by a second instance)
        broker.exchange.call("create_order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
                             newClientOrderId=make_client_order_id("mlr", "BTCUSDT", T0 + 99 * H, "entry"))
        with pytest.raises(PositionMismatch, match="position mismatch"):
            bot.process(candles.iloc[:5])
        assert store.risk().halted


def test_a_quiet_close_reads_only_the_orders_since_the_last_agreeing_check(tmp_path):
    """At a close where nothing moved since the trades last explained the position, the check costs one
    allOrders read (from the resume point) and this close's balances: no myTrades. Any change to the
    state file, or an unknown order with the bot's prefix, brings the full check back."""
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        assert broker.send(_order(store)).status is S.FILLED
        broker.check_position()                        # the full check: it agrees
        first_id = store.first_exchange_ids()[0]

        def reads() -> list[tuple[str, dict]]:
            got = [(r.path, r.query) for r in fx.requests if r.method == "GET" and r.path in
                   ("/api/v3/allOrders", "/api/v3/myTrades")]
            fx.requests.clear()
            return got

        reads()
        broker.check_position(fresh=False, if_changed=True)
        assert [(p, q.get("orderId")) for p, q in reads()] == [("/api/v3/allOrders", str(first_id))]
        broker.check_position(fresh=False, if_changed=True)
        assert [p for p, _ in reads()] == ["/api/v3/allOrders"]
        assert broker.send(_order(store, side="SELL", qty="0.005", open_ms=T0 + H, leg="exit")).status is S.FILLED
        reads()
        broker.check_position(fresh=False, if_changed=True)  # an order changed the state file: the full check
        assert "/api/v3/myTrades" in [p for p, _ in reads()]
        assert not store.risk().halted


def test_a_resting_order_with_the_bots_prefix_below_the_resume_point_is_not_missed_when_it_fills(tmp_path):
    """The quiet close reads allOrders from the resume point only. Order ids grow with creation, so a new
    order (anyone's) always lands at or after it, and every order older than the read-lag bound was visible
    to the full read; but an order still OPEN then can change later. A resting LIMIT BUY with the bot's
    prefix that the state file does not know (placed outside the bot) explains nothing while it rests; when
    it fills, after the full check agreed, the next close must see it (the resume point stays at the oldest
    order that can still change) and halt."""
    with FakeExchange(balances={"USDT": "1000000", "BTC": "0"}) as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        assert broker.send(_order(store)).status is S.FILLED
        broker.exchange.call("create_order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                             quantity="0.01", price="30000",
                             newClientOrderId=make_client_order_id("mlr", "BTCUSDT", T0 + 99 * H, "entry"))
        assert broker.send(_order(store, side="SELL", qty="0.005", open_ms=T0 + H, leg="exit")).status is S.FILLED
        fx.clock_skew_ms = 5 * 60_000                  # five minutes on: every order is older than the bound
        broker.exchange.server_time_ms()
        broker.check_position()                        # the full check agrees: the resting order has no trade
        assert not store.risk().halted
        assert broker._agreed[1][0] <= min(o["orderId"] for o in fx.orders if o["status"] == "NEW")
        assert fx.set_price("BTCUSDT", "29000")        # it fills: the account holds 0.01 BTC more
        with pytest.raises(PositionMismatch, match="position mismatch"):
            broker.check_position(fresh=False, if_changed=True)
        assert store.risk().halted


# ----------------------------------------------------------------------- f. paging, -2026
def test_the_position_is_explained_from_every_page_since_the_state_file_began(tmp_path):
    with FakeExchange(balances={"USDT": "1000000", "BTC": "0"}) as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        assert broker.send(_order(store)).status is S.FILLED
        for i in range(1001):                         # orders (and trades) by hand after it: > 1000 rows
            fx._new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                           "newClientOrderId": f"manual{i}"})
        sell = _order(store, side="SELL", qty="0.005", open_ms=T0 + H, leg="exit")
        assert broker.send(sell).status is S.FILLED  # the bot's first and last orders are 1000 rows apart
        broker.check_position()
        assert not store.risk().halted


def test_an_archived_order_is_recorded_cancelled_never_halts(tmp_path):
    with FakeExchange() as fx:
        with _store(tmp_path) as store:
            broker = _broker(fx, store)
            fx.market_fill_fraction = D("0")          # expires with nothing executed
            cid = _order(store)
            store.transition(cid, S.UNKNOWN, reason="lost")   # sent; the process died before the answer
            broker.venue.place(store.order(cid))
        fx.archive_after_days = 1.0
        fx.clock_skew_ms = 2 * 86_400_000             # two days later: -2026 ORDER_ARCHIVED
        with _store(tmp_path) as store:
            broker = _broker(fx, store)
            broker.exchange.server_time_ms()
            broker.reconcile()
            rec = store.order(cid)
            assert rec.status is S.CANCELLED and rec.executed_qty == 0 and "archived" in rec.reason
            assert fx.fired["archived"] > 0 and not store.risk().halted


# ----------------------------------------------------------------------- g. the status map lives in the venue
def test_no_binance_status_map_outside_the_venue():
    import mlrisk.live.state as state
    import mlrisk.live.venue as venue

    assert not hasattr(state, "BINANCE_STATUS") and venue.BINANCE_STATUS["EXPIRED"] is S.CANCELLED


@pytest.mark.parametrize("fraction", ["0.5", "0"])
def test_the_engines_account_follows_a_partial_or_no_fill(tmp_path, fraction):
    """The real account is the truth: the engine's market entry fills at the next open only the part
    the exchange filled (none: no entry), compared with the same bot whose order filled in full."""
    candles = _candles(4)
    held = {}
    for name, part in (("full", None), ("part", D(fraction))):
        with FakeExchange() as fx, StateStore(tmp_path / f"{name}.sqlite", symbol="BTCUSDT", interval="1h",
                                              mode="testnet") as store:
            broker = _broker(fx, store)
            bot = Bot(lambda h: 0.9, 2, 1, params_vector(BP, H), H, RiskLimits(0.0, 1.0, 1.0, 1200), store,
                      CandleLog(None, None), broker=broker)
            fx.market_fill_fraction = part
            for i in range(1, 3):                     # entry sent at close 1, the engine fills it at open 2
                fx.set_price("BTCUSDT", f"{candles['close'].iloc[i]:.2f}")
                bot.process(candles.iloc[: i + 1])
                fx.market_fill_fraction = None
            held[name] = bot.state.account.position().qty
            o = store.order(make_client_order_id("mlr", "BTCUSDT", T0 + H, "entry"))
            real = o.executed_qty / o.quantity       # the part filled (rounded down to the lot step)
            assert (o.status, real > 0) == ((S.CANCELLED, fraction != "0") if part is not None else (S.FILLED, True))
    assert held["full"] > 0 and held["part"] == pytest.approx(held["full"] * float(real), rel=1e-9)


def test_an_order_left_unknown_is_settled_at_the_next_close_once_its_records_appear(tmp_path):
    with FakeExchange() as fx, _store(tmp_path) as store:
        broker = _broker(fx, store)
        fx.query_lag_ms = 60_000
        cid = _order(store)
        fx.schedule("unknown", method="POST", status=408, execute=True)
        assert broker.send(cid).status is S.UNKNOWN and store.risk().halted
        fx.query_lag_ms = 0                            # the exchange's records catch up
        broker.equity(40000.0)
        broker.prepare([], 40000.0, T0 + H)            # the next close: settled, and the position agrees
        assert store.order(cid).status is S.FILLED and _posts(fx, cid) == 1
        assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) > 0
