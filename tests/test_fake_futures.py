"""The fake USDT-M futures exchange, driven through the real python-binance client: account setup
endpoints, MARKET and LIMIT orders with the one-way position and its P&L, reduce-only and duplicate
id refusals, algo (take-profit/stop) orders and their triggers, and the fault schedule on /fapi."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import requests
from binance.client import Client

from fake_binance import make_candles
from fake_futures import FakeFuturesExchange
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.filters import symbol_filters
from test_fake_exchange import api_error

T = 1_700_000_000_000
CID = make_client_order_id("mlr", "BTCUSDT", T, "entry")


def client_for(fx: FakeFuturesExchange, timeout: float = 5.0) -> Client:
    c = Client(fx.api_key, fx.api_secret, requests_params={"timeout": timeout}, ping=False)
    c.FUTURES_URL = f"{fx.url}/fapi"
    return c


@pytest.fixture
def fx():
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as f:
        yield f


def test_public_endpoints_time_exchange_info_and_klines():
    rows = make_candles(5, start_ms=T // 3_600_000 * 3_600_000)
    with FakeFuturesExchange(candles={("BTCUSDT", "1h"): rows}) as fx:
        c = client_for(fx)
        assert abs(c.futures_time()["serverTime"] - fx.server_ms()) < 2000
        f = symbol_filters(c.futures_exchange_info(), "BTCUSDT")
        assert (f.min_notional, f.step_size, f.tick_size) == (D(100), D("0.001"), D("0.1"))
        assert [k[0] for k in c.futures_klines(symbol="BTCUSDT", interval="1h", limit=3)] == [r[0] for r in rows[:3]]
        assert [r.path for r in fx.requests][-1] == "/fapi/v1/klines"


def test_margin_type_leverage_and_position_mode(fx):
    c = client_for(fx)
    assert c.futures_get_position_mode() == {"dualSidePosition": False}
    assert c.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED")["code"] == 200
    e = api_error(c.futures_change_margin_type, symbol="BTCUSDT", marginType="ISOLATED")
    assert (e.code, e.message) == (-4046, "No need to change margin type.")
    assert c.futures_change_leverage(symbol="BTCUSDT", leverage=3)["leverage"] == 3
    pos = [p for p in c.futures_account()["positions"] if p["symbol"] == "BTCUSDT"][0]
    assert (pos["isolated"], pos["leverage"], pos["positionAmt"]) == (True, "3", "0")
    assert c.futures_position_information(symbol="BTCUSDT") == []      # V3: no position, no open orders, no row
    assert [r.path for r in fx.requests if "positionRisk" in r.path] == ["/fapi/v3/positionRisk"]
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    assert c.futures_position_information(symbol="BTCUSDT")[0]["positionAmt"] == "0.01"
    assert api_error(c.futures_change_margin_type, symbol="BTCUSDT", marginType="CROSSED").code == -4048


def test_market_orders_move_the_position_realise_pnl_and_pay_fees(fx):
    c = client_for(fx)
    c.futures_change_leverage(symbol="BTCUSDT", leverage=5)
    r = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.1", newClientOrderId=CID,
                               newOrderRespType="RESULT")
    assert (r["status"], r["executedQty"], r["avgPrice"], r["cumQuote"]) == ("FILLED", "0.1", "40000", "4000")
    ack = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.1")  # ACK: Binance's default
    assert ack["status"] == "NEW" and c.futures_get_order(symbol="BTCUSDT", orderId=ack["orderId"])["status"] == "FILLED"
    assert fx.position() == (D("0.2"), D(40000))
    fx.set_price("BTCUSDT", "41000")
    assert D(c.futures_position_information(symbol="BTCUSDT")[0]["unRealizedProfit"]) == D(200)
    acct = c.futures_account()
    assert D(acct["totalUnrealizedProfit"]) == D(200) and D(acct["availableBalance"]) == fx.wallet - D(8000) / 5
    c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.3")       # flips to short 0.1
    assert fx.position() == (D("-0.1"), D(41000))
    trades = c.futures_account_trades(symbol="BTCUSDT")
    assert [t["realizedPnl"] for t in trades] == ["0", "0", "200"] and {t["commissionAsset"] for t in trades} == {"USDT"}
    fees = sum(D(t["commission"]) for t in trades)
    assert fees == (D(4000) + D(4000) + D(12300)) * D("0.0005") and fx.wallet == D(10000) + D(200) - fees
    assert D(c.futures_account_balance()[0]["balance"]) == fx.wallet


def test_limit_orders_rest_fill_at_their_price_and_cancel(fx):
    c = client_for(fx)
    r = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
                               price="39000", newClientOrderId=CID)
    assert r["status"] == "NEW" and [o["clientOrderId"] for o in c.futures_get_open_orders(symbol="BTCUSDT")] == [CID]
    e = api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                  quantity="0.01", price="38000", newClientOrderId=CID)
    assert (e.code, e.message) == (-4116, "ClientOrderId is duplicated.")
    assert fx.set_price("BTCUSDT", "39000.1") == []
    assert [o["clientOrderId"] for o in fx.set_price("BTCUSDT", "38900")] == [CID]
    q = c.futures_get_order(symbol="BTCUSDT", origClientOrderId=CID)
    assert (q["status"], q["avgPrice"]) == ("FILLED", "39000") and fx.position() == (D("0.01"), D(39000))
    assert c.futures_account_trades(symbol="BTCUSDT")[0]["maker"] is True
    cid2 = make_client_order_id("mlr", "BTCUSDT", T + 1, "entry")
    c.futures_create_order(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.01",
                           price="45000", newClientOrderId=cid2)
    assert c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=cid2)["status"] == "CANCELED"
    assert api_error(c.futures_cancel_order, symbol="BTCUSDT", origClientOrderId=cid2).code == -2011
    assert api_error(c.futures_get_order, symbol="BTCUSDT", origClientOrderId="nope").code == -2013


def test_reduce_only_orders_that_would_open_or_flip_are_rejected(fx):
    c = client_for(fx)
    e = api_error(c.futures_create_order, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.01", reduceOnly="true")
    assert (e.code, e.message) == (-2022, "ReduceOnly Order is rejected.")
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    for side, qty in (("BUY", "0.01"), ("SELL", "0.02")):
        assert api_error(c.futures_create_order, symbol="BTCUSDT", side=side, type="MARKET", quantity=qty,
                         reduceOnly="true").code == -2022
    c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.01", reduceOnly="true")
    assert fx.position()[0] == 0
    # the minimum notional (100 USDT) and the margin
    e = api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001")
    assert (e.code, e.message) == (-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).")
    assert api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="10").code == -2019


def test_algo_orders_trigger_close_the_position_and_finish(fx):
    c = client_for(fx)
    c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.05")
    tp, sl = (make_client_order_id("mlr", "BTCUSDT", T, leg) for leg in ("tp", "sl"))
    a = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="TAKE_PROFIT_MARKET", triggerPrice="39000",
                               closePosition="true", clientAlgoId=tp)
    assert (a["algoStatus"], a["clientAlgoId"], a["triggerPrice"]) == ("NEW", tp, "39000")
    c.futures_create_order(symbol="BTCUSDT", side="BUY", type="STOP_MARKET", stopPrice="41000", closePosition="true",
                           clientAlgoId=sl)                                   # stopPrice becomes triggerPrice
    assert [x["clientAlgoId"] for x in c.futures_get_open_orders(symbol="BTCUSDT", conditional=True)] == [tp, sl]
    assert [r.path for r in fx.requests if r.method == "POST"][-1] == "/fapi/v1/algoOrder"
    assert api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="STOP_MARKET", triggerPrice="39500",
                     closePosition="true", clientAlgoId="x1").code == -2021     # would trigger at once
    assert fx.set_price("BTCUSDT", "39500") == []
    done = fx.set_price("BTCUSDT", "38900")
    assert [o["clientOrderId"] for o in done] == [tp] and fx.position()[0] == 0
    q = c.futures_get_order(symbol="BTCUSDT", clientAlgoId=tp)
    assert (q["algoStatus"], q["actualPrice"], q["executedQty"]) == ("FINISHED", "39000", "0.05")
    actual = c.futures_get_order(symbol="BTCUSDT", orderId=int(q["actualOrderId"]))
    assert (actual["status"], actual["closePosition"], actual["origType"]) == ("FILLED", True, "TAKE_PROFIT_MARKET")
    assert c.futures_account_trades(symbol="BTCUSDT", orderId=actual["orderId"])[0]["realizedPnl"] == "50"
    assert c.futures_cancel_order(symbol="BTCUSDT", clientAlgoId=sl)["clientAlgoId"] == sl
    assert c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl)["algoStatus"] == "CANCELED"
    assert api_error(c.futures_cancel_order, symbol="BTCUSDT", clientAlgoId=sl).code == -2011
    assert api_error(c.futures_get_order, symbol="BTCUSDT", clientAlgoId="nope").code == -2013
    assert c.futures_get_open_orders(symbol="BTCUSDT", conditional=True) == []


def test_faults_and_signatures_apply_to_fapi(fx):
    c = client_for(fx, timeout=0.5)
    fx.schedule("lost", method="POST", path="/fapi/v1/order")
    with pytest.raises(requests.ConnectionError):
        c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01", newClientOrderId=CID)
    assert c.futures_get_order(symbol="BTCUSDT", origClientOrderId=CID)["status"] == "FILLED"   # it went through
    fx.schedule("error", method="POST", path="/fapi/v1/order", status=503)
    assert api_error(c.futures_create_order, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01").status_code == 503
    bad = Client(fx.api_key, "wrong-secret", ping=False)
    bad.FUTURES_URL = f"{fx.url}/fapi"
    assert api_error(bad.futures_position_information, symbol="BTCUSDT").code == -1022
    assert fx.position()[0] == D("0.01")
