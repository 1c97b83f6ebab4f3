"""The user data stream client (:mod:`mlrisk.live.user_stream`) against the fake stream
(tests/fake_user_stream.py) of a running fake spot or futures exchange: fills, a triggered stop,
a liquidation, reconnects with the gap reported, listen-key keepalive and renewal, latency."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Callable

import pytest
from fake_exchange import FakeExchange
from fake_futures import FakeFuturesExchange
from fake_user_stream import FakeUserStream, liquidate

from mlrisk.exchange import ExchangeClient
from mlrisk.live.state import OrderStatus
from mlrisk.live.user_stream import UserStream
from mlrisk.live.venue import (AlgoUpdate, BalanceUpdate, OrderUpdate, PositionUpdate, StreamControl, parse_futures_event,
                               parse_spot_event, ws_api_signature)
from mlrisk.settings import BinanceSettings
from conftest import wait_until


def client(fx: Any, market: str, secret: str | None = None) -> ExchangeClient:
    s = BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=secret or fx.api_secret, timeout_s=0.5)
    return ExchangeClient(s, market=market, signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)




def wait_for(stream: UserStream, pred: Callable[[Any], bool], timeout: float = 1.5) -> tuple[Any, list[Any]]:
    """The first update matching ``pred`` not taken yet (and those received before it), within
    ``timeout`` s; updates drained and not taken stay for the next call."""
    buf = stream.__dict__.setdefault("_test_buffer", [])   # per stream object (an id() can be reused)
    end = time.monotonic() + timeout
    while True:
        buf.extend(stream.drain())
        for i, u in enumerate(buf):
            if pred(u):
                before = buf[:i]
                del buf[i]
                return u, before
        if time.monotonic() > end:
            raise AssertionError(f"no matching update within {timeout} s; got {buf}")
        time.sleep(0.005)



# ---------------------------------------------------------------------------------------------- futures
def test_futures_fill_reaches_the_queue_within_a_second_of_the_state_change() -> None:
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures") as us:
        ex = client(fx, "futures")
        with UserStream(ex, "futures", us.stream_url) as s:
            assert s.wait_connected(2.0) and us.wait_live()
            t0 = time.monotonic()     # before the order (the state change happens inside the REST call)
            ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET",
                    quantity="0.01", newClientOrderId="buy-1")
            u, seen = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None)
            assert time.monotonic() - t0 < 1.0
            trade = fx.trades[-1]
            assert (u.client_order_id, u.status, u.executed_qty, u.liquidation) == ("buy-1", OrderStatus.FILLED,
                                                                                  Decimal("0.01"), False)
            assert u.cumulative_quote == Decimal("400")
            assert (u.fill.trade_id, u.fill.price, u.fill.qty, u.fill.commission, u.fill.commission_asset,
                    u.fill.time_ms) == (trade["id"], Decimal("40000"), Decimal("0.01"), Decimal(trade["commission"]),
                                        "USDT", trade["time"])
            assert any(isinstance(x, OrderUpdate) and x.status is OrderStatus.OPEN for x in seen)  # NEW came first
            pos, _ = wait_for(s, lambda u: isinstance(u, PositionUpdate))
            assert (pos.symbol, pos.qty, pos.entry_price, pos.reason) == ("BTCUSDT", Decimal("0.01"), Decimal("40000"), "ORDER")
            assert s.healthy and s.gaps == 0


def test_futures_triggered_stop_gives_the_algo_update_and_its_fill() -> None:
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures") as us:
        ex = client(fx, "futures")
        ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
        assert us.caught_up()   # its events were made before anyone listened
        with UserStream(ex, "futures", us.stream_url) as s:
            assert s.wait_connected(2.0) and us.wait_live()
            ex.call(lambda **kw: ex.client._request_futures_api("post", "algoOrder", signed=True, data=kw),
                    idempotent=False, symbol="BTCUSDT", side="SELL", type="STOP_MARKET", algoType="CONDITIONAL",
                    triggerPrice="39000", closePosition="true", clientAlgoId="stop-1")
            new, _ = wait_for(s, lambda u: isinstance(u, AlgoUpdate))
            assert (new.client_algo_id, new.algo_status, new.actual_order_id) == ("stop-1", "NEW", None)
            t0 = time.monotonic()
            fx.set_price("BTCUSDT", "38900")
            done, seen = wait_for(s, lambda u: isinstance(u, AlgoUpdate) and u.algo_status == "FINISHED")
            fill, more = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None)
            assert time.monotonic() - t0 < 1.0
            assert done.actual_order_id == fill.exchange_order_id
            assert (fill.client_order_id, fill.status, fill.fill.price) == ("stop-1", OrderStatus.FILLED, Decimal("39000"))
            pos, _ = wait_for(s, lambda u: isinstance(u, PositionUpdate))
            assert pos.qty == 0


def test_futures_liquidation_is_flagged_and_the_position_goes_flat() -> None:
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures") as us:
        ex = client(fx, "futures")
        ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.5")
        assert us.caught_up()   # its events were made before anyone listened
        with UserStream(ex, "futures", us.stream_url) as s:
            assert s.wait_connected(2.0) and us.wait_live()
            t0 = time.monotonic()
            liquidate(fx, "BTCUSDT", "38100")
            liq, _ = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None)
            pos, _ = wait_for(s, lambda u: isinstance(u, PositionUpdate))
            assert time.monotonic() - t0 < 1.0
            assert liq.liquidation and liq.client_order_id.startswith("autoclose-") and liq.status is OrderStatus.FILLED
            assert (liq.fill.qty, liq.fill.price) == (Decimal("0.5"), Decimal("38100"))
            assert (pos.qty, pos.entry_price) == (0, 0)


def test_futures_reconnect_after_a_cut_reports_the_gap_and_rest_recovers_the_missed_fill() -> None:
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures") as us:
        ex = client(fx, "futures")
        reconciled: list[Any] = []

        def on_gap(why: str) -> None:   # what the broker will do: query what the stream may have missed
            reconciled.append((why, ex.call("futures_get_order", symbol="BTCUSDT", origClientOrderId="during-gap")))

        with UserStream(ex, "futures", us.stream_url, backoff_s=0.05, on_gap=on_gap) as s:
            assert s.wait_connected(2.0) and us.wait_live()
            us.refuse = True
            us.drop()
            assert wait_until(lambda: not s.connected)
            ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET",
                    quantity="0.01", newClientOrderId="during-gap")
            assert us.caught_up()                 # its events are made while nobody listens: lost, as on Binance
            us.refuse = False
            assert wait_until(lambda: bool(reconciled)) and s.gaps == 1
            assert reconciled[0][0] == "reconnected" and reconciled[0][1]["status"] == "FILLED"
            assert not [u for u in s.drain() if isinstance(u, OrderUpdate) and u.client_order_id == "during-gap"]
            s.__dict__.pop("_test_buffer", None)
            ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET",
                    quantity="0.01", newClientOrderId="after-gap")
            u, _ = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None)
            assert u.client_order_id == "after-gap" and s.connects == 2


def test_futures_connection_cut_at_its_maximum_age_is_made_again() -> None:
    with FakeFuturesExchange() as fx, FakeUserStream(fx, "futures", max_connection_s=0.4) as us:
        with UserStream(client(fx, "futures"), "futures", us.stream_url, backoff_s=0.05) as s:
            assert wait_until(lambda: s.connects >= 2 and s.connected, timeout=2.5)
            assert s.gaps == s.connects - 1
            assert len(us.issued) == 1            # the same key (still valid) serves the new connection


def test_futures_keepalive_is_sent_before_the_key_expires() -> None:
    with FakeFuturesExchange() as fx, FakeUserStream(fx, "futures", listen_key_ttl_s=0.6) as us:
        with UserStream(client(fx, "futures"), "futures", us.stream_url, keepalive_s=0.2) as s:
            assert s.wait_connected(2.0)
            time.sleep(1.5)                        # 2.5 lifetimes of the key
            puts = [t for m, t in us.key_calls if m == "PUT"]
            assert len(puts) >= 5 and max(b - a for a, b in zip(puts, puts[1:])) < 0.6
            assert us.expired_sent == 0 and s.gaps == 0 and s.connects == 1 and s.healthy
            assert len(us.issued) == 1
        assert us.key_calls[-1][0] == "DELETE"


def test_futures_expired_key_is_renewed_and_events_flow_again() -> None:
    with FakeFuturesExchange() as fx, FakeUserStream(fx, "futures", listen_key_ttl_s=0.4) as us:
        ex = client(fx, "futures")
        gaps: list[str] = []
        with UserStream(ex, "futures", us.stream_url, keepalive_s=3600, backoff_s=0.05, on_gap=gaps.append) as s:
            assert s.wait_connected(2.0)
            assert wait_until(lambda: us.expired_sent == 1 and len(us.issued) == 2 and s.connected, timeout=2.0)
            assert gaps == ["the listen key expired"] and s.gaps == 1
            assert s.listen_key == us.issued[-1] != us.issued[0]
            assert us.wait_live(2)
            ex.call("futures_create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET",
                    quantity="0.01", newClientOrderId="renewed")
            u, _ = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None, timeout=1.0)
            assert u.client_order_id == "renewed"


def test_futures_failed_keepalive_gets_a_new_key() -> None:
    with FakeFuturesExchange() as fx, FakeUserStream(fx, "futures") as us:
        with UserStream(client(fx, "futures"), "futures", us.stream_url, keepalive_s=0.2, backoff_s=0.05) as s:
            assert s.wait_connected(2.0) and wait_until(lambda: us.key is not None)
            us._delete_key({})                     # the exchange forgot the key: PUT answers -1125
            assert wait_until(lambda: len(us.issued) == 2 and s.connected and s.connects == 2, timeout=2.0)
            assert s.listen_key == us.issued[-1]


# ---------------------------------------------------------------------------------------------- spot
def test_spot_fill_and_cancel_by_signature_subscription() -> None:
    with FakeExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "spot") as us:
        ex = client(fx, "spot")
        with UserStream(ex, "spot", us.stream_url) as s:
            assert s.wait_connected(2.0) and us.subscriptions == 1
            ex.call("create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
                    newClientOrderId="spot-buy")
            u, _ = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.fill is not None)
            trade = fx.trades[-1]
            assert (u.client_order_id, u.status, u.executed_qty, u.cumulative_quote) == (
                "spot-buy", OrderStatus.FILLED, Decimal("0.01"), Decimal("400"))
            assert (u.fill.trade_id, u.fill.commission, u.fill.commission_asset) == (
                trade["id"], Decimal(trade["commission"]), "BTC")
            bal, _ = wait_for(s, lambda u: isinstance(u, BalanceUpdate) and u.asset == "BTC")
            assert bal.free == fx.balance("BTC")[0]
            ex.call("create_order", idempotent=False, symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                    quantity="0.01", price="30000", newClientOrderId="spot-limit")
            ex.call("cancel_order", symbol="BTCUSDT", origClientOrderId="spot-limit")
            c, _ = wait_for(s, lambda u: isinstance(u, OrderUpdate) and u.status is OrderStatus.CANCELLED)
            assert c.client_order_id == "spot-limit"   # the order's id ("C"), not the cancel request's ("c")


def test_spot_bad_signature_is_refused_and_never_live() -> None:
    with FakeExchange() as fx, FakeUserStream(fx, "spot") as us:
        with UserStream(client(fx, "spot", secret="wrong"), "spot", us.stream_url, backoff_s=0.05) as s:
            assert wait_until(lambda: len(us.paths) >= 2)
            assert not s.connected and us.subscriptions == 0 and "-1022" in s.state


def test_spot_server_shutdown_and_age_cut_reconnect_with_gaps() -> None:
    with FakeExchange() as fx, FakeUserStream(fx, "spot") as us:
        with UserStream(client(fx, "spot"), "spot", us.stream_url, backoff_s=0.05) as s:
            assert s.wait_connected(2.0)
            us.server_shutdown()
            assert wait_until(lambda: s.connects == 2 and s.connected and us.subscriptions == 2, timeout=10), (
                s.connects, s.connected, us.subscriptions)   # 10 s: a loaded CI machine once needed more than 5
            assert s.gaps == 1
    with FakeExchange() as fx, FakeUserStream(fx, "spot", max_connection_s=0.4) as us:
        with UserStream(client(fx, "spot"), "spot", us.stream_url, backoff_s=0.05) as s:
            assert wait_until(lambda: s.connects >= 2 and s.connected, timeout=2.5)


# ---------------------------------------------------------------------------------------------- parsing
def test_parsers_read_documented_payloads() -> None:
    # user-data-stream.md's executionReport example, a cancel of "orig" by request "cancel-req"
    ev = {"subscriptionId": 0, "event": {"e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "cancel-req",
                                         "C": "orig", "x": "CANCELED", "X": "CANCELED", "i": 4293153, "l": "0", "z": "0.5",
                                         "L": "0", "n": "0", "N": None, "T": 1499405658657, "t": -1, "Z": "0.05"}}
    (u,) = parse_spot_event(ev)
    assert (u.client_order_id, u.status, u.fill, u.executed_qty) == ("orig", OrderStatus.CANCELLED, None, Decimal("0.5"))
    assert parse_spot_event({"event": {"e": "serverShutdown", "E": 1}}) == [StreamControl("shutdown", 1)]
    assert parse_spot_event({"id": "x", "status": 200, "result": {"subscriptionId": 0}}) == []
    assert parse_futures_event({"e": "listenKeyExpired", "E": "1736996475556", "listenKey": "k"}) == [
        StreamControl("expired", 1736996475556)]
    (a,) = parse_futures_event({"e": "ALGO_UPDATE", "T": 1, "E": 2, "o": {"caid": "Q5", "aid": 2148719, "s": "BNBUSDT",
                                                                           "X": "CANCELED", "ai": ""}})
    assert (a.client_algo_id, a.algo_id, a.algo_status, a.actual_order_id) == ("Q5", 2148719, "CANCELED", None)
    acct = {"e": "ACCOUNT_UPDATE", "E": 5, "a": {"m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "10.5"}],
                                                 "P": [{"s": "BTCUSDT", "pa": "-0.2", "ep": "41000", "ps": "BOTH"}]}}
    b, p = parse_futures_event({"stream": "k", "data": acct})
    assert (b.asset, b.free, p.qty, p.entry_price, p.reason) == ("USDT", Decimal("10.5"), Decimal("-0.2"), Decimal("41000"),
                                                                "FUNDING_FEE")
    (o,) = parse_futures_event({"e": "ORDER_TRADE_UPDATE", "E": 9, "o": {
        "s": "BTCUSDT", "c": "x", "o": "MARKET", "x": "EXPIRED", "X": "EXPIRED", "i": 7, "z": "0", "ap": "0", "l": "0", "er": "5"}})
    assert (o.status, o.expiry_reason, o.fill, o.liquidation) == (OrderStatus.CANCELLED, "5", None, False)


def test_ws_api_signature_matches_the_documented_example() -> None:
    # web-socket-api.md "SIGNED request security", the ASCII example and its openssl result
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532,
              "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", "signature": "------ FILL ME ------"}
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert ws_api_signature(params, secret) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


@pytest.mark.parametrize("market", ["spot", "futures"])
def test_close_ends_the_thread(market: str) -> None:
    fake = FakeExchange if market == "spot" else FakeFuturesExchange
    with fake() as fx, FakeUserStream(fx, market) as us:
        s = UserStream(client(fx, market), market, us.stream_url).start()  # type: ignore[arg-type]
        assert s.wait_connected(2.0)
        t0 = time.monotonic()
        s.close()
        assert time.monotonic() - t0 < 1.5 and not s._thread.is_alive() and not s.connected
