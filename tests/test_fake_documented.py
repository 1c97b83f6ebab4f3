"""The fakes' documented behaviours (each a switch, off by default), driven through the real python-binance
client: unknown-outcome answers (-1006/-1007), reads that lag writes, client ids freed by final orders,
spot MARKET partial fills that expire, the futures algo order statuses, list windows and retention,
futures' own order-placement codes, the kline websocket's paths, and the random chaos helper."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from fake_binance import make_candles
from fake_exchange import UNKNOWN_MSGS, FakeExchange, Fault
from fake_futures import FakeFuturesExchange
from fake_kline_ws import FakeKlineWS
from mlrisk.live.client_ids import make_client_order_id
from test_fake_exchange import api_error, client_for
from test_fake_futures import client_for as f_client_for

T = 1_700_000_000_000
DAY = 86_400_000
CID = make_client_order_id("mlr", "BTCUSDT", T, "entry")
CID2 = make_client_order_id("mlr", "BTCUSDT", T + 1, "entry")


@pytest.fixture
def fx():
    with FakeExchange(balances={"USDT": "10000", "BTC": "0.5"}, prices={"BTCUSDT": "40000"}) as f:
        yield f


@pytest.fixture
def ff():
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as f:
        yield f


def advance(fake: FakeExchange, client, ms: int) -> None:
    """Move the exchange's clock (and the client's, so its timestamps stay inside recvWindow)."""
    fake.clock_skew_ms += ms
    client.timestamp_offset += ms


def spot_buy(c, cid: str = CID, qty: str = "0.01") -> dict:
    return c.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=qty, newClientOrderId=cid)


def fut_buy(c, cid: str = CID, qty: str = "0.01") -> dict:
    return c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=qty, newClientOrderId=cid)


# ---------------------------------------------------------------------- off by default
def test_every_switch_is_off_by_default(fx, ff):
    for f in (fx, ff):
        assert (f.query_lag_ms, f.trade_lag_ms, f.position_lag_ms, f.market_fill_fraction, f.archive_after_days,
                f.lookup_window) == (0, 0, 0, None, None, False)
        assert f.documented_report() == {}
    assert (ff.algo_lag_ms, ff.algo_reject, ff.order_retention, ff.trade_window) == (0, False, False, False)
    assert Fault("error").code == -1001 and Fault("error").status == 500     # the old error fault is unchanged
    c = client_for(fx)
    r = spot_buy(c)
    assert r["status"] == "FILLED" and "expiryReason" not in r
    assert c.get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"   # visible at once
    assert len(c.get_my_trades(symbol="BTCUSDT")) == 1 and fx.documented_report() == {}
    ws = FakeKlineWS()
    assert (ws.market, ws.legacy_paths, ws.legacy_status) == ("spot", True, None)


# ---------------------------------------------------------------------- 1. unknown outcome
@pytest.mark.parametrize("status, code, execute", [(408, -1007, True), (408, -1007, False), (400, -1006, True),
                                                   (400, -1007, False)])
def test_unknown_outcome_spot(fx, status, code, execute):
    c = client_for(fx)
    f = fx.schedule("unknown", method="POST", path="/api/v3/order", status=status, code=code, execute=execute)
    e = api_error(spot_buy, c)
    assert (e.status_code, e.code, e.message) == (status, code, UNKNOWN_MSGS[code]) and f.fired
    if execute:
        assert c.get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"
        assert fx.balance("USDT")[0] == D("9600")
    else:
        assert api_error(c.get_order, symbol="BTCUSDT", origClientOrderId=CID).code == -2013
        assert fx.orders == []
    assert fx.documented_report() == {"unknown_executed" if execute else "unknown_not_executed": 1}


def test_unknown_outcome_defaults_and_futures(ff):
    f = Fault("unknown")
    assert (f.status, f.code, f.msg) == (408, -1007, UNKNOWN_MSGS[-1007])
    with pytest.raises(ValueError, match="-1006 or -1007"):
        Fault("unknown", code=-2010)
    c = f_client_for(ff)
    ff.schedule("unknown", method="POST", path="/fapi/v1/order", execute=True)
    e = api_error(fut_buy, c)
    assert (e.status_code, e.code) == (408, -1007)
    assert c.futures_get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"
    assert ff.position()[0] == D("0.01")
    ff.schedule("unknown", method="POST", path="/fapi/v1/order", code=-1006, status=400)
    assert api_error(fut_buy, c, CID2).code == -1006 and ff.position()[0] == D("0.01")
    assert api_error(c.futures_get_order, symbol="BTCUSDT", origClientOrderId=CID2).code == -2013


# ---------------------------------------------------------------------- 2. reads lag writes
def test_spot_query_and_trade_lag(fx):
    c = client_for(fx)
    fx.query_lag_ms, fx.trade_lag_ms = 60_000, 120_000
    r = spot_buy(c)
    assert r["status"] == "FILLED"                                      # the write itself answers at once
    assert api_error(c.get_order, symbol="BTCUSDT", origClientOrderId=CID).code == -2013
    assert api_error(c.get_order, symbol="BTCUSDT", orderId=r["orderId"]).code == -2013
    assert c.get_all_orders(symbol="BTCUSDT") == [] and c.get_my_trades(symbol="BTCUSDT") == []
    advance(fx, c, 60_001)
    assert c.get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"
    assert len(c.get_all_orders(symbol="BTCUSDT")) == 1 and c.get_my_trades(symbol="BTCUSDT") == []
    advance(fx, c, 60_000)
    assert [t["orderId"] for t in c.get_my_trades(symbol="BTCUSDT")] == [r["orderId"]]
    rep = fx.documented_report()
    assert rep["query_lag"] >= 3 and rep["trade_lag"] >= 2


def test_futures_query_trade_and_position_lag(ff):
    c = f_client_for(ff)
    fut_buy(c)
    advance(ff, c, 2 * 3_600_000)
    ff.query_lag_ms = ff.trade_lag_ms = ff.position_lag_ms = 3_600_000     # an hour: what the kill tests' clock moves
    fut_buy(c, CID2)
    assert ff.position()[0] == D("0.02")
    assert api_error(c.futures_get_order, symbol="BTCUSDT", origClientOrderId=CID2).code == -2013
    assert [o["clientOrderId"] for o in c.futures_get_all_orders(symbol="BTCUSDT")] == [CID]
    assert len(c.futures_account_trades(symbol="BTCUSDT")) == 1
    assert c.futures_position_information(symbol="BTCUSDT")[0]["positionAmt"] == "0.01"   # before the fill
    pos = [p for p in c.futures_account()["positions"] if p["symbol"] == "BTCUSDT"][0]
    assert pos["positionAmt"] == "0.01"
    advance(ff, c, 3_600_001)
    assert c.futures_get_order(symbol="BTCUSDT", origClientOrderId=CID2)["status"] == "FILLED"
    assert len(c.futures_account_trades(symbol="BTCUSDT")) == 2
    assert c.futures_position_information(symbol="BTCUSDT")[0]["positionAmt"] == "0.02"
    assert {"query_lag", "trade_lag", "position_lag"} <= set(ff.documented_report())


# ---------------------------------------------------------------------- 3. a final order frees its client id
def test_futures_client_id_is_refused_while_open_and_free_once_final(ff):
    c = f_client_for(ff)
    kw = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="39000",
              newClientOrderId=CID)
    c.futures_create_order(**kw)
    e = api_error(fut_buy, c)
    assert (e.code, e.message) == (-4116, "ClientOrderId is duplicated.")
    ff.set_price("BTCUSDT", "38900")                         # it fills: the id is free again
    r = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", newClientOrderId=CID,
                               newOrderRespType="RESULT")
    assert r["status"] == "FILLED" and ff.position()[0] == D("0.02") and len(ff.orders_with_client_id(CID)) == 2
    kw.update(newClientOrderId=CID2, price="38000")
    c.futures_create_order(**kw)
    c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=CID2)
    assert c.futures_create_order(**kw)["status"] == "NEW"                  # cancelled: free too


def test_spot_cancelled_client_id_may_be_reused(fx):
    c = client_for(fx)
    kw = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="39000",
              newClientOrderId=CID)
    c.create_order(**kw)
    assert api_error(c.create_order, **kw).message == "Duplicate order sent."
    c.cancel_order(symbol="BTCUSDT", origClientOrderId=CID)
    assert c.create_order(**kw)["status"] == "NEW" and len(fx.orders_with_client_id(CID)) == 2


# ---------------------------------------------------------------------- 4. spot MARKET partial fill then EXPIRED
def test_market_partial_fill_then_expired(fx):
    c = client_for(fx)
    fx.market_fill_fraction = D("0.5")
    r = spot_buy(c, qty="0.01")
    assert (r["status"], r["origQty"], r["executedQty"], r["cummulativeQuoteQty"], r["expiryReason"]) == \
        ("EXPIRED", "0.01000000", "0.00500000", "200.00000000", "INSUFFICIENT_LIQUIDITY")
    assert [f["qty"] for f in r["fills"]] == ["0.00500000"]
    for o in (c.get_order(symbol="BTCUSDT", origClientOrderId=CID), c.get_all_orders(symbol="BTCUSDT")[0]):
        assert (o["status"], o["executedQty"], o["cummulativeQuoteQty"], o["expiryReason"]) == \
            ("EXPIRED", "0.00500000", "200.00000000", "INSUFFICIENT_LIQUIDITY")
    assert fx.balance("USDT")[0] == D("9800") and fx.balance("BTC")[0] == D("0.5") + D("0.005") - D("0.000005")
    assert c.get_open_orders(symbol="BTCUSDT") == []
    fx.market_fill_fraction = D("0")
    z = spot_buy(c, CID2)
    assert (z["status"], z["executedQty"], z["fills"]) == ("EXPIRED", "0.00000000", [])
    assert fx.documented_report() == {"partial_expired": 2}


# ---------------------------------------------------------------------- 5. algo order statuses
def _short_with_stop(ff, c) -> str:
    c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.05")
    sl = make_client_order_id("mlr", "BTCUSDT", T, "sl")
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="STOP_MARKET", triggerPrice="41000",
                           closePosition="true", clientAlgoId=sl)
    return sl


def test_algo_order_triggering_then_triggered_then_finished(ff):
    c = f_client_for(ff)
    ff.algo_lag_ms = 1000
    sl = _short_with_stop(ff, c)
    assert ff.set_price("BTCUSDT", "41100") == []
    q = c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl)
    assert (q["algoStatus"], q["actualOrderId"]) == ("TRIGGERING", "") and ff.position()[0] == D("-0.05")
    assert api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="STOP_MARKET", triggerPrice="42000",
                     closePosition="true", clientAlgoId=sl).code == -4116        # not final: its id is taken
    advance(ff, c, 1000)
    q = c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl)
    assert q["algoStatus"] == "TRIGGERED" and q["actualOrderId"] != "" and ff.position()[0] == 0
    assert c.futures_get_order(symbol="BTCUSDT", orderId=int(q["actualOrderId"]))["status"] == "FILLED"
    advance(ff, c, 1000)
    assert c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl)["algoStatus"] == "FINISHED"


def test_algo_order_rejected_leaves_the_position_open(ff):
    c = f_client_for(ff)
    ff.algo_reject = True
    sl = _short_with_stop(ff, c)
    n = len(ff.orders)
    assert ff.set_price("BTCUSDT", "41100") == []
    q = c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl)
    assert (q["algoStatus"], q["actualOrderId"], q["executedQty"]) == ("REJECTED", "", "0")
    assert ff.position()[0] == D("-0.05") and len(ff.orders) == n
    assert c.futures_get_open_orders(symbol="BTCUSDT", conditional=True) == []
    assert ff.documented_report() == {"algo_reject": 1}


# ---------------------------------------------------------------------- 6. lists: limits, windows, retention
def test_spot_my_trades_limit_gives_the_most_recent(fx):
    c = client_for(fx)
    ids = [spot_buy(c, make_client_order_id("mlr", "BTCUSDT", T + i, "entry"))["orderId"] for i in range(3)]
    assert [t["orderId"] for t in c.get_my_trades(symbol="BTCUSDT", limit=2)] == ids[1:]
    assert [t["orderId"] for t in c.get_my_trades(symbol="BTCUSDT", fromId=1, limit=2)] == ids[:2]
    assert api_error(c.get_my_trades, symbol="BTCUSDT", limit=1001).code == -1130


def test_spot_lookup_window_of_24_hours(fx):
    c = client_for(fx)
    spot_buy(c)
    now = fx.server_ms()
    kw = dict(symbol="BTCUSDT", startTime=now - 25 * 3_600_000, endTime=now + 1000)
    assert len(c.get_all_orders(**kw)) == 1 and len(c.get_my_trades(**kw)) == 1        # off: any range
    fx.lookup_window = True
    for fn in (c.get_all_orders, c.get_my_trades):
        e = api_error(fn, **kw)
        assert (e.code, e.message) == (-1127, "More than 24 hours between startTime and endTime.")
    assert len(c.get_my_trades(symbol="BTCUSDT", startTime=now - 3_600_000, endTime=now + 1000)) == 1


def test_futures_user_trades_seven_day_window(ff):
    c = f_client_for(ff)
    old = fut_buy(c)
    advance(ff, c, 8 * DAY)
    new = fut_buy(c, CID2)
    assert [t["orderId"] for t in c.futures_account_trades(symbol="BTCUSDT")] == [old["orderId"], new["orderId"]]
    ff.trade_window = True
    assert [t["orderId"] for t in c.futures_account_trades(symbol="BTCUSDT")] == [new["orderId"]]
    start = ff.server_ms() - 9 * DAY
    e = api_error(c.futures_account_trades, symbol="BTCUSDT", startTime=start, endTime=ff.server_ms())
    assert e.code == -1127
    got = c.futures_account_trades(symbol="BTCUSDT", startTime=start, endTime=start + 7 * DAY)
    assert [t["orderId"] for t in got] == [old["orderId"]]


def test_futures_forget_unfilled_final_orders_after_three_days(ff):
    c = f_client_for(ff)
    ff.order_retention = True
    filled = fut_buy(c)
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
                           price="39000", newClientOrderId=CID2)
    c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=CID2)
    advance(ff, c, 3 * DAY - 60_000)
    assert c.futures_get_order(symbol="BTCUSDT", origClientOrderId=CID2)["status"] == "CANCELED"
    advance(ff, c, 120_000)
    assert api_error(c.futures_get_order, symbol="BTCUSDT", origClientOrderId=CID2).code == -2013
    assert [o["orderId"] for o in c.futures_get_all_orders(symbol="BTCUSDT")] == [filled["orderId"]]
    ff.orders[0]["status"] = "EXPIRED"     # as if the exchange expired it after a fill (the fake has no partial fills)
    assert c.futures_get_order(symbol="BTCUSDT", orderId=filled["orderId"])["status"] == "EXPIRED"   # a fill: kept
    advance(ff, c, 88 * DAY)
    assert api_error(c.futures_get_order, symbol="BTCUSDT", orderId=filled["orderId"]).code == -2013   # 90 days


def test_spot_archived_order_answers_2026(fx):
    c = client_for(fx)
    fx.archive_after_days = 1
    spot_buy(c)
    fx.market_fill_fraction = D("0.5")
    cid3 = make_client_order_id("mlr", "BTCUSDT", T + 2, "entry")
    assert spot_buy(c, cid3)["status"] == "EXPIRED"                  # expired, but with a fill
    fx.market_fill_fraction = None
    c.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01", price="39000",
                   newClientOrderId=CID2)
    c.cancel_order(symbol="BTCUSDT", origClientOrderId=CID2)
    advance(fx, c, DAY + 1000)
    e = api_error(c.get_order, symbol="BTCUSDT", origClientOrderId=CID2)
    assert (e.code, e.message) == (-2026, "Order was canceled or expired with no executed qty over 90 days ago and "
                                          "has been archived.")
    assert [o["clientOrderId"] for o in c.get_all_orders(symbol="BTCUSDT")] == [CID, cid3]
    assert c.get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"   # filled: never archived
    assert c.get_order(symbol="BTCUSDT", origClientOrderId=cid3)["status"] == "EXPIRED"  # a fill: never archived


# ---------------------------------------------------------------------- 7. futures order-placement codes
@pytest.mark.parametrize("params, code, msg", [
    ({"type": "LIMIT", "price": "39000.05"}, -4014, "Price not increased by tick size."),
    ({"type": "LIMIT", "price": "39000.123"}, -1111, "Precision is over the maximum defined for this asset."),
    ({"quantity": "0.0105"}, -1111, "Precision is over the maximum defined for this asset."),
    ({"quantity": "0.002"}, -4164, "Order's notional must be no smaller than 100 (unless you choose reduce only)."),
    ({"quantity": "121"}, -4005, "Quantity greater than max quantity."),
    ({"type": "LIMIT", "price": "500"}, -4013, "Price less than min price."),
    ({"quantity": "10"}, -2019, "Margin is insufficient."),
])
def test_futures_order_placement_codes(ff, params, code, msg):
    c = f_client_for(ff)
    kw = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01", **params}
    if kw["type"] == "LIMIT":
        kw["timeInForce"] = "GTC"
    e = api_error(c.futures_create_order, **kw)
    assert (e.status_code, e.code, e.message) == (400, code, msg) and ff.orders == []


def test_futures_second_close_position_algo_in_the_same_direction_is_refused(ff):
    c = f_client_for(ff)
    _short_with_stop(ff, c)
    e = api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="STOP_MARKET", triggerPrice="42000",
                  closePosition="true", clientAlgoId="other")
    assert e.code == -4130 and "closePosition" in e.message
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="TAKE_PROFIT_MARKET", triggerPrice="39000",
                           closePosition="true", clientAlgoId="tp")                # another type: fine
    reduce = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002", reduceOnly="true",
                                    newOrderRespType="RESULT")                     # below 100 USDT, reduce-only: fine
    assert reduce["status"] == "FILLED"


# ---------------------------------------------------------------------- 8. websocket paths
def _gets_kline(ws: FakeKlineWS, path: str, timeout: float = 0.3) -> str | None:
    """Connect to ``path``, stream one closed candle, and return what arrives within ``timeout`` s (None: nothing)."""
    row = make_candles(1)[0]
    before = len(ws.paths)
    with connect(f"{ws.url}{path}", open_timeout=2) as conn:
        for _ in range(200):                 # until the server has registered this connection
            if len(ws.paths) > before:
                break
            time.sleep(0.005)
        ws.send_candle(row, partials=0)
        try:
            return conn.recv(timeout=timeout)
        except TimeoutError:
            return None


def test_spot_raw_and_combined_stream_paths():
    with FakeKlineWS(heartbeat_s=None) as ws:
        raw = _gets_kline(ws, "/ws/btcusdt@kline_1h")
        assert raw is not None and '"e": "kline"' in raw
        comb = _gets_kline(ws, "/stream?streams=ethusdt@trade/btcusdt@kline_1h")
        assert comb is not None and comb.startswith('{"stream": "btcusdt@kline_1h", "data": {"e": "kline"')
        assert _gets_kline(ws, "/ws/ethusdt@kline_1h") is None                 # another stream: nothing for us
        with pytest.raises(InvalidStatus):
            connect(f"{ws.url}/market/ws/btcusdt@kline_1h", open_timeout=2)    # a futures path on spot: 404


def test_futures_routed_paths_and_legacy_switch():
    with FakeKlineWS(heartbeat_s=None, market="futures") as ws:
        assert _gets_kline(ws, "/market/ws/btcusdt@kline_1h") is not None
        assert _gets_kline(ws, "/market/stream?streams=btcusdt@kline_1h").startswith('{"stream"')
        assert _gets_kline(ws, "/public/ws/btcusdt@kline_1h") is None          # klines are a /market stream
        assert _gets_kline(ws, "/ws/btcusdt@kline_1h") is not None             # legacy, still served by default
        ws.legacy_paths = False
        assert _gets_kline(ws, "/ws/btcusdt@kline_1h") is None                 # connects, then silence
        assert _gets_kline(ws, "/market/ws/btcusdt@kline_1h") is not None
        ws.legacy_status = 404
        with pytest.raises(InvalidStatus) as e:
            connect(f"{ws.url}/ws/btcusdt@kline_1h", open_timeout=2)
        assert e.value.response.status_code == 404


# ---------------------------------------------------------------------- 9. the random chaos helper
def test_enable_documented_is_seeded_and_reports_what_fired(fx, ff):
    assert fx.enable_documented(seed=1, rate=0.0) == {} and fx.scheduled == []
    on = ff.enable_documented(seed=7, rate=1.0, lag_ms=60_000)
    assert set(on) == {"unknown", "query_lag", "trade_lag", "position_lag", "algo_lag", "algo_reject", "forgotten",
                       "trade_window"}
    assert (ff.query_lag_ms, ff.algo_reject, ff.trade_window) == (60_000, True, True)
    with FakeFuturesExchange() as again:
        assert again.enable_documented(seed=7, rate=1.0, lag_ms=60_000) == on      # the same seed, the same draw
    c = f_client_for(ff)
    u = on["unknown"]
    results = []
    for i in range(u["skip"] + 1):
        try:
            results.append(fut_buy(c, make_client_order_id("mlr", "BTCUSDT", T + i, "entry"))["status"])
        except Exception as e:  # noqa: BLE001 - the unknown-outcome answer
            results.append(getattr(e, "code", None))
    assert results[-1] == u["code"] and results[:-1] == ["NEW"] * u["skip"]
    c.futures_get_all_orders(symbol="BTCUSDT")
    rep = ff.documented_report()
    assert rep["unknown_executed" if u["execute"] else "unknown_not_executed"] == 1 and rep["query_lag"] >= 1
