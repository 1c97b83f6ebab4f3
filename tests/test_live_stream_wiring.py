"""The user data stream wired into the bot (testnet mode against the fake exchanges and the fake
stream, tests/fake_user_stream.py): between two closes the loop's wait drains the stream and
execution applies each update, so a triggered stop, a liquidation and a spot fill are in the state
file within a second of the event, not at the next close; a disconnect that loses an event is
repaired by a REST reconciliation at the next drain; the settings and the app's start of the stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal as D
from typing import Any

import pytest
from fake_exchange import FakeExchange
from fake_futures import FakeFuturesExchange
from fake_user_stream import FakeUserStream, liquidate
from test_live_futures_broker import BP, H, T0, _bot, _flat, _run, _scripted, _store, cid

from mlrisk.exchange import ExchangeClient
from mlrisk.live.execution.spot import ExchangeBroker
from mlrisk.live.feeds.polling import PollingFeed
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Stopper
from mlrisk.live.settings import LiveSettings
from mlrisk.live.state import NewOrder, OrderStatus, StateStore, now_ms
from mlrisk.live.user_stream import StreamPump, UserStream
from mlrisk.settings import BinanceSettings
from conftest import wait_until

S = OrderStatus
KEYS = {"api_key": "KEYstream0123456789", "api_secret": "SECRETstream0123456789"}


@contextmanager
def _wired(fx: Any, market: str, broker: Any, log: CandleLog, **kw: Any) -> Iterator[tuple[Any, UserStream, StreamPump]]:
    """The fake stream of ``fx``, the bot's stream client on it (live) and the pump that applies it."""
    with FakeUserStream(fx, market, **kw) as us:
        stream = UserStream(broker.exchange, market, us.stream_url, backoff_s=0.05)  # type: ignore[arg-type]
        pump = StreamPump(stream, broker.apply_update, broker.stream_reconcile, log.event)
        with stream:
            assert stream.wait_connected(3.0)
            yield us, stream, pump


def _feed(fx: Any, market: str, stop: Stopper, pump: StreamPump) -> PollingFeed:
    s = BinanceSettings(base_url=fx.url, timeout_s=0.5)
    ex = ExchangeClient(s, market=market, signed=False, max_retries=1, backoff_s=0.0, sleep=lambda s: None)
    return PollingFeed(ex, "BTCUSDT", "1h", H, poll_retry_s=5.0, stop=stop, idle=pump.drain)


def _between_closes(feed: PollingFeed, stop: Stopper, action: Callable[[], None], wait_s: float = 1.5) -> int:
    """The loop's wait for the next close (an hour away) in this thread; ``action`` runs on another
    thread 0.2 s in; the wait is stopped ``wait_s`` after it. Returns the ms just before the action."""
    at: dict[str, int] = {}

    def fire() -> None:
        at["ms"] = now_ms()
        try:
            action()
        finally:
            threading.Timer(wait_s, stop.request, args=("test over",)).start()

    threading.Timer(0.2, fire).start()
    nxt = (feed.server_now() // H + 1) * H
    assert feed.wait_for(nxt) is None          # no candle closed: all that happened came between closes
    return at["ms"]


def _events(path: Any) -> list[dict[str, Any]]:
    return [r for r in (json.loads(x) for x in path.read_text().splitlines()) if "event" in r]



# ------------------------------------------------------------------------------------ futures
def _own_actual_ids(fx: Any) -> None:
    """The triggered order of an algo order gets a client id of its own (Binance does not document
    which id it carries; the fake reuses the clientAlgoId): only the ALGO_UPDATE then names ours."""
    make = fx._make_order

    def renamed(sym: str, side: str, otype: str, qty: Any, price: Any, cid: str, *rest: Any) -> Any:
        if any(a["clientAlgoId"] == cid for a in fx.algos):
            cid = f"actual-{cid[-12:]}"
        return make(sym, side, otype, qty, price, cid, *rest)

    fx._make_order = renamed


@pytest.mark.parametrize("actual_id", ["the algo's", "its own"])
def test_a_stop_triggered_between_closes_is_recorded_within_a_second(tmp_path, actual_id):
    bp = BP.model_copy(update={"take_profit": 0.02, "stop_loss": 0.01})
    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        if actual_id == "its own":
            _own_actual_ids(fx)
        bot = _bot(fx, store, _scripted({1: 0.9}), bp)
        _run(fx, bot, candles, 1, 2)
        sl = cid(1, "sl")
        assert store.order(sl).status is S.OPEN and fx.position()[0] > 0
        log = CandleLog(tmp_path / "bot.jsonl", None)
        with _wired(fx, "futures", bot.broker, log) as (_us, _stream, pump):
            stop = Stopper(None)
            t = _between_closes(_feed(fx, "futures", stop, pump), stop, lambda: fx.set_price("BTCUSDT", "39550"))
        o = store.order(sl)
        assert o.status is S.FILLED and store.fills(sl)[0].price == D("39600")
        assert 0 <= o.updated_ms - t <= 1000, o.updated_ms - t
        assert store.position("BTCUSDT").quantity == 0 == fx.position()[0]
        assert bot.last_processed == T0 + H                       # no close in between
        assert bot.broker.last_stream_update(sl) is not None
        assert any(e["event"] == "stream" and sl in e["message"] for e in _events(tmp_path / "bot.jsonl"))
        _run(fx, bot, candles, 2, 3)                              # the next close agrees: no mismatch, no halt
        assert not store.risk().halted


def test_a_liquidation_is_recorded_within_a_second_and_halts_entries(tmp_path):
    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]
        assert held > 0 and store.position("BTCUSDT").quantity == held
        log = CandleLog(tmp_path / "bot.jsonl", None)
        with _wired(fx, "futures", bot.broker, log) as (_us, _stream, pump):
            stop = Stopper(None)
            t = _between_closes(_feed(fx, "futures", stop, pump), stop, lambda: liquidate(fx, "BTCUSDT", "30000"))
        pos = store.position("BTCUSDT")
        assert pos.quantity == 0 == fx.position()[0]
        assert 0 <= pos.updated_ms - t <= 1000, pos.updated_ms - t
        r = store.risk()
        assert r.halted and r.halt_reason.startswith("liquidated")
        liq = [o for o in store.orders() if o.leg == "liquidation"]
        assert len(liq) == 1 and liq[0].status is S.FILLED and liq[0].executed_qty == held and liq[0].side == "SELL"
        assert liq[0].client_order_id.startswith("autoclose-")
        assert [f.price for f in store.fills(liq[0].client_order_id)] == [D("30000")]
        assert [e["event"] for e in _events(tmp_path / "bot.jsonl")].count("liquidated") == 1
        assert bot.last_processed == T0 + H
        _run(fx, bot, candles, 2, 3)                              # recorded = exchange: the close goes on, halted
        assert store.risk().halt_reason.startswith("liquidated") and fx.position()[0] == 0


def test_a_disconnect_that_loses_an_event_is_reconciled_by_rest_at_the_next_drain(tmp_path):
    bp = BP.model_copy(update={"take_profit": 0.02, "stop_loss": 0.01})
    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}), bp)
        _run(fx, bot, candles, 1, 2)
        sl = cid(1, "sl")
        log = CandleLog(tmp_path / "bot.jsonl", None)
        with _wired(fx, "futures", bot.broker, log) as (us, stream, pump):
            def cut() -> None:
                us.refuse = True          # cut, and new connections refused for a moment
                us.drop()
                assert wait_until(lambda: not stream.connected)
                fx.set_price("BTCUSDT", "39550")   # the stop triggers while no stream is live: its events are lost
                time.sleep(0.3)
                us.refuse = False

            stop = Stopper(None)
            _between_closes(_feed(fx, "futures", stop, pump), stop, cut, wait_s=2.0)
            assert stream.gaps >= 1
        assert store.order(sl).status is S.FILLED and store.position("BTCUSDT").quantity == 0
        assert pump.reconciliations >= 1 and bot.last_processed == T0 + H
        rec = [e for e in _events(tmp_path / "bot.jsonl") if e["event"] == "stream_reconcile"]
        assert rec and any(sl in line for e in rec for line in e["lines"])


# --------------------------------------------------------------------------------------- spot
def test_a_spot_fill_arrives_by_the_stream_between_closes(tmp_path):
    with FakeExchange(prices={"BTCUSDT": "40000"}, **KEYS) as fx, \
            StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", market="spot", mode="testnet") as store:
        s = BinanceSettings(base_url=fx.url, timeout_s=0.5, **KEYS)
        ex = ExchangeClient(s, market="spot", signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)
        broker = ExchangeBroker(ex, store, "BTCUSDT", "mlr", 0.1, 10.0, sleep=lambda s: None)
        c = cid(1, "entry")
        store.insert_order(NewOrder(c, "BTCUSDT", "BUY", "MARKET", D("0.01"), T0 + H, "entry"))
        store.transition(c, S.UNKNOWN, reason="timeout: the outcome is unknown")
        log = CandleLog(tmp_path / "bot.jsonl", None)
        with _wired(fx, "spot", broker, log) as (_us, _stream, pump):
            stop = Stopper(None)
            # the lost request executes late at the exchange, under the bot's client id
            t = _between_closes(_feed(fx, "spot", stop, pump), stop, lambda: ex.client.create_order(
                symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", newClientOrderId=c))
        o = store.order(c)
        assert o.status is S.FILLED and o.executed_qty == D("0.01")
        assert 0 <= o.updated_ms - t <= 1000, o.updated_ms - t
        trades = [x for x in fx.trades if x["orderId"] == o.exchange_order_id]
        assert [f.trade_id for f in store.fills(c)] == [x["id"] for x in trades]
        assert store.position("BTCUSDT").quantity == broker.exchange_position() > 0
        u = broker.last_stream_update(c)
        assert u is not None and u.status is S.FILLED and u.exchange_order_id == o.exchange_order_id
        assert broker.last_stream_update("mlr-none") is None


def test_an_unknown_outcome_whose_rest_records_lag_is_settled_from_the_stream(tmp_path):
    """-1007 after executing, and the order query / allOrders lag far past the bound: without the stream
    the bot fails closed (halt naming the client id, test_live_documented_spot); with it, the
    settlement applies the stream's pending updates first and records the fill, no halt, no resend."""
    with FakeExchange(prices={"BTCUSDT": "40000"}, **KEYS) as fx, \
            StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", market="spot", mode="testnet") as store:
        s = BinanceSettings(base_url=fx.url, timeout_s=0.5, **KEYS)
        ex = ExchangeClient(s, market="spot", signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)
        broker = ExchangeBroker(ex, store, "BTCUSDT", "mlr", 0.1, 10.0, recv_window_ms=200, read_lag_ms=800)
        c = cid(1, "entry")
        store.insert_order(NewOrder(c, "BTCUSDT", "BUY", "MARKET", D("0.01"), T0 + H, "entry"))
        store.commit_candle(T0 + H)
        log = CandleLog(tmp_path / "bot.jsonl", None)
        with _wired(fx, "spot", broker, log) as (_us, _stream, pump):
            broker.follow_stream(pump.drain)
            fx.query_lag_ms = 60_000          # GET order -2013, allOrders without it, for a minute
            fx.schedule("unknown", method="POST", status=408, code=-1007, execute=True)
            rec = broker.send(c)
        assert rec.status is S.FILLED and rec.executed_qty == D("0.01"), rec
        assert not store.risk().halted
        posts = [r for r in fx.requests if (r.method, r.path) == ("POST", "/api/v3/order")]
        assert len(posts) == 1 and len(fx.orders_with_client_id(c)) == 1


# ---------------------------------------------------------------------------- settings and app
def test_the_stream_is_on_in_the_exchange_modes_with_binance_documented_urls():
    def s(mode: str, market: str, **kw: Any) -> LiveSettings:
        return LiveSettings(mode=mode, market=market, binance=BinanceSettings(**KEYS, **kw.pop("b", {})),
                            i_understand_real_money=mode == "live", max_position_notional=100.0,
                            max_leverage=1.0, **kw)

    assert s("live", "spot").user_stream and s("live", "spot").uds_url == "wss://ws-api.binance.com:443/ws-api/v3"
    assert s("live", "futures").uds_url == "wss://fstream.binance.com/private"
    assert s("testnet", "spot").uds_url == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    assert s("testnet", "futures").uds_url == "wss://fstream.binancefuture.com/private"
    assert s("live", "futures").user_stream_key_form == "query"
    assert s("testnet", "futures", user_stream=False).uds_url is None
    # another REST host without a stream URL: no stream (never Binance's stream beside a fake REST host)
    assert s("testnet", "futures", b={"base_url": "http://127.0.0.1:1"}).uds_url is None
    assert s("testnet", "futures", b={"base_url": "http://127.0.0.1:1"},
             user_stream_url="ws://127.0.0.1:2/private").uds_url == "ws://127.0.0.1:2/private"


def test_the_app_starts_the_stream_from_the_settings_and_stops_it(tmp_path):
    from mlrisk.live.app import start_user_stream

    with FakeFuturesExchange(**KEYS) as fx, _store(tmp_path) as store, FakeUserStream(fx, "futures") as us:
        settings = LiveSettings(mode="testnet", market="futures", max_leverage=5.0, user_stream_url=us.stream_url,
                                binance=BinanceSettings(base_url=fx.url, **KEYS))
        ex = ExchangeClient(settings.exchange_settings(), market="futures", signed=True, max_retries=1, backoff_s=0.0,
                            sleep=lambda s: None)
        from mlrisk.live.execution.futures import FuturesBroker
        broker = FuturesBroker(ex, store, "BTCUSDT", "mlr", BP, max_leverage=5.0, sleep=lambda s: None)
        log = CandleLog(tmp_path / "bot.jsonl", None)
        pump = start_user_stream(settings, ex, broker, log)
        assert pump is not None
        try:
            assert pump.stream.wait_connected(3.0) and us.wait_live(1, 3.0) and us.live_connections == 1
            assert us.paths[0].startswith("/private/ws?listenKey=")
        finally:
            pump.close()
        assert wait_until(lambda: us.live_connections == 0)
        off = LiveSettings(mode="testnet", market="futures", max_leverage=5.0,
                           binance=BinanceSettings(base_url=fx.url, **KEYS))
        assert start_user_stream(off, ex, broker, log) is None
        assert any(e["event"] == "warning" and "user data stream off" in e["message"]
                   for e in _events(tmp_path / "bot.jsonl"))


@pytest.mark.slow
def test_the_cli_bot_records_a_stop_from_the_stream_between_closes(tmp_path):
    """``mlrisk live --mode testnet --market futures`` in a subprocess with MLRISK_USER_STREAM_URL on
    the fake stream: the stop that triggers while the bot waits for the next close (an hour away) is
    in the state file within a second; the stream is closed on exit."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from fake_binance import make_candles
    from test_live_testnet_cli import _pinned_repo

    _pinned_repo(tmp_path, {"direction": "both", "leverage": 3.0, "take_profit": 0.04, "stop_loss": 0.02})
    now = int(time.time() * 1000)
    start = (now // H - 30) * H
    rows = make_candles(31, start_ms=start, price=40000.0)
    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    last_closed = start + 29 * H
    with StateStore(state, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet") as store:
        store.commit_candle(last_closed - H)
    with FakeFuturesExchange(**KEYS, candles={("BTCUSDT", "1h"): rows}, prices={"BTCUSDT": rows[29][4]}) as fx, \
            FakeUserStream(fx, "futures") as us:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url,
               "MLRISK_BINANCE_API_KEY": KEYS["api_key"], "MLRISK_BINANCE_API_SECRET": KEYS["api_secret"],
               "MLRISK_USER_STREAM_URL": us.stream_url}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--market", "futures", "--max-leverage", "3",
                "--state-file", str(state), "--log-file", str(log), "--kill-switch-file", str(kill),
                "--env-file", str(tmp_path / "none")]
        p = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            sl = make_client_order_id("mlr", "BTCUSDT", last_closed, "sl")
            assert wait_until(lambda: p.poll() is None and us.live_connections == 1
                          and any(a["clientAlgoId"] == sl for a in fx.algos), timeout=90), p.poll()
            level = next(a["triggerPrice"] for a in fx.algos if a["clientAlgoId"] == sl)
            t = now_ms()
            fx.set_price("BTCUSDT", level - 10)

            def filled() -> bool:
                with StateStore.open_readonly(state) as s:
                    o = s.order(sl)
                    return o.status is S.FILLED
            assert wait_until(filled, timeout=5.0)
            with StateStore.open_readonly(state) as s:
                assert s.order(sl).updated_ms - t <= 1000 and s.position("BTCUSDT").quantity == 0 == fx.position()[0]
                assert s.last_processed_candle() == last_closed          # no close in between
        finally:
            kill.touch()
            out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        events = _events(log)
        assert any(e["event"] == "user_stream" for e in events)
        assert any(e["event"] == "stream" and sl in e["message"] for e in events)
        assert wait_until(lambda: us.live_connections == 0)
        for blob in [log.read_bytes(), (out + err).encode()]:
            assert KEYS["api_secret"].encode() not in blob
