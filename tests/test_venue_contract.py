"""Contract tests: every endpoint the live bot calls, answered by the fakes (``FakeExchange``,
``FakeFuturesExchange``) through the real python-binance client, has the same keys and the same JSON
types (string / number / bool / null / list / object, recursively; a list by its first element) as
Binance's documented example response in ``tests/binance_docs/`` (sources: the ``_source`` of each
file and ``tests/binance_docs/SOURCES.md``).

A fixture may name, with a reason taken from the docs:
``_optional``     documented keys an answer may leave out (conditional fields),
``_conditional``  keys the example lacks but the docs say can appear (their value gives the type),
``_keyed_lists``  lists whose elements differ by a key (exchangeInfo ``filters`` by ``filterType``):
                  each element is checked against the documented element with the same key value.
Paths: ``a.b`` for nested keys, ``[]`` for the elements of a list (``[].stopPrice``, ``symbols[].filters``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fake_binance import make_candles
from fake_exchange import FakeExchange
from fake_futures import FakeFuturesExchange
from mlrisk.live.client_ids import make_client_order_id
from test_fake_exchange import client_for as spot_client
from test_fake_futures import client_for as futures_client

DOCS = Path(__file__).parent / "binance_docs"
T = 1_700_000_000_000
HOUR = 3_600_000


def doc(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.json").read_text())


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):           # before int: bool is an int in Python, not in JSON
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def shape_drift(want: Any, got: Any, fixture: dict[str, Any], path: str = "") -> list[str]:
    """Differences between the documented example ``want`` and an answer ``got`` (empty: same shape)."""
    optional = fixture.get("_optional", {})
    conditional = fixture.get("_conditional", {})
    keyed = fixture.get("_keyed_lists", {})
    where = path or "<root>"
    if json_type(want) != json_type(got):
        return [f"{where}: documented {json_type(want)}, got {json_type(got)} ({got!r:.60})"]
    out: list[str] = []
    if isinstance(want, dict):
        for k in want:
            p = _join(path, k)
            if k not in got:
                if p not in optional:
                    out.append(f"{p}: documented key missing")
            else:
                out += shape_drift(want[k], got[k], fixture, p)
        for k in got:
            p = _join(path, k)
            if k in want:
                continue
            if p in conditional:
                out += shape_drift(conditional[p], got[k], fixture, p)
            else:
                out.append(f"{p}: undocumented key ({got[k]!r:.40})")
    elif isinstance(want, list):
        if path in keyed:
            key = keyed[path]
            by = {w.get(key): w for w in want}
            if not got:
                out.append(f"{where}: empty, cannot be checked (populate the state)")
            for g in got:
                if g.get(key) not in by:
                    out.append(f"{where}: undocumented {key} {g.get(key)!r}")
                else:
                    out += shape_drift(by[g.get(key)], g, fixture, f"{path}[]")
        elif want:
            if not got:
                out.append(f"{where}: empty, cannot be checked (populate the state)")
            else:
                out += shape_drift(want[0], got[0], fixture, f"{path}[]")
    return out


def check(name: str, got: Any) -> None:
    fixture = doc(name)
    drift = shape_drift(fixture["response"], got, fixture)
    assert not drift, f"{name} differs from Binance's documented example:\n  " + "\n  ".join(drift)


# ----------------------------------------------------------------------------- the checker itself
def test_the_checker_sees_a_dropped_a_retyped_and_an_added_field():
    fixture = doc("futures_order_get")
    good = dict(fixture["response"])
    assert shape_drift(fixture["response"], good, fixture) == []
    dropped = {k: v for k, v in good.items() if k != "cumQuote"}
    assert shape_drift(fixture["response"], dropped, fixture) == ["cumQuote: documented key missing"]
    assert shape_drift(fixture["response"], {**good, "orderId": "1917641"}, fixture)[0].startswith(
        "orderId: documented number, got string")
    assert shape_drift(fixture["response"], {**good, "reduceOnly": 0}, fixture)[0].startswith(
        "reduceOnly: documented bool, got number")
    assert shape_drift(fixture["response"], {**good, "fee": "1"}, fixture) == ["fee: undocumented key ('1')"]
    assert shape_drift(fixture["response"], {k: v for k, v in good.items() if k != "priceRate"}, fixture) == []  # optional
    rows = doc("spot_myTrades")
    assert shape_drift(rows["response"], [{**rows["response"][0], "isMaker": "false"}], rows) == [
        "[].isMaker: documented bool, got string ('false')"]
    assert shape_drift(rows["response"], [], rows) == ["<root>: empty, cannot be checked (populate the state)"]
    info = doc("spot_exchangeInfo")
    sym = {**info["response"]["symbols"][0], "filters": [{"filterType": "LOT_SIZE", "minQty": 1, "maxQty": "9",
                                                          "stepSize": "1"}]}
    assert shape_drift(info["response"], {**info["response"], "symbols": [sym]}, info) == [
        "symbols[].filters[].minQty: documented string, got number (1)"]


def test_every_fixture_names_its_source():
    names = sorted(p.stem for p in DOCS.glob("*.json"))
    assert len(names) == 33
    sources = (DOCS / "SOURCES.md").read_text()
    for n in names:
        assert doc(n)["_source"] and f"{n}.json" in sources


# ----------------------------------------------------------------------------- spot
def test_spot_endpoints_match_the_documented_examples():
    rows = make_candles(3, start_ms=T // HOUR * HOUR)
    with FakeExchange(balances={"USDT": "10000", "BTC": "0.5"}, prices={"BTCUSDT": "40000"},
                      candles={("BTCUSDT", "1h"): rows}) as fx:
        c = spot_client(fx)
        check("spot_time", c.get_server_time())
        check("spot_exchangeInfo", c.get_exchange_info())
        check("spot_klines", c.get_klines(symbol="BTCUSDT", interval="1h", limit=3))
        cid = make_client_order_id("mlr", "BTCUSDT", T, "entry")
        check("spot_order_post_full", c.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
                                                     newClientOrderId=cid, newOrderRespType="FULL"))
        check("spot_order_get", c.get_order(symbol="BTCUSDT", origClientOrderId=cid))
        rest = make_client_order_id("mlr", "BTCUSDT", T + HOUR, "entry")
        c.create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
                       price="30000.00", newClientOrderId=rest)
        check("spot_openOrders", c.get_open_orders(symbol="BTCUSDT"))
        check("spot_order_delete", c.cancel_order(symbol="BTCUSDT", origClientOrderId=rest))
        check("spot_allOrders", c.get_all_orders(symbol="BTCUSDT", limit=1000))
        check("spot_myTrades", c.get_my_trades(symbol="BTCUSDT", limit=1000))
        check("spot_account", c.get_account())


# ----------------------------------------------------------------------------- futures
def test_futures_endpoints_match_the_documented_examples():
    rows = make_candles(3, start_ms=T // HOUR * HOUR)
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}, candles={("BTCUSDT", "1h"): rows}) as fx:
        c = futures_client(fx)
        check("futures_time", c.futures_time())
        check("futures_exchangeInfo", c.futures_exchange_info())
        check("futures_klines", c.futures_klines(symbol="BTCUSDT", interval="1h", limit=3))
        check("futures_positionSide_dual", c.futures_get_position_mode())
        check("futures_marginType", c.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED"))
        check("futures_leverage", c.futures_change_leverage(symbol="BTCUSDT", leverage=3))
        check("futures_leverageBracket", c.futures_leverage_bracket(symbol="BTCUSDT"))
        cid = make_client_order_id("mlr", "BTCUSDT", T, "entry")
        check("futures_order_post", c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01",
                                                           newClientOrderId=cid, newOrderRespType="RESULT"))
        check("futures_order_get", c.futures_get_order(symbol="BTCUSDT", origClientOrderId=cid))
        check("futures_userTrades", c.futures_account_trades(symbol="BTCUSDT"))
        check("futures_positionRisk_v3", c.futures_position_information(symbol="BTCUSDT"))
        check("futures_premiumIndex", c.futures_mark_price(symbol="BTCUSDT"))
        fx.set_funding("BTCUSDT", "0.0001", next_ms=fx.server_ms())                # a settlement: both rows exist
        check("futures_income", c.futures_income_history(symbol="BTCUSDT", incomeType="FUNDING_FEE"))
        check("market_data/futures_fundingRate", c.futures_funding_rate(symbol="BTCUSDT"))   # the settlements' rows
        check("futures_account_v2", c.futures_account())
        check("futures_balance_v3", c.futures_account_balance())
        rest = make_client_order_id("mlr", "BTCUSDT", T + HOUR, "entry")
        c.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
                               price="30000", newClientOrderId=rest)
        check("futures_openOrders", c.futures_get_open_orders(symbol="BTCUSDT"))
        check("futures_order_delete", c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=rest))
        check("futures_allOrders", c.futures_get_all_orders(symbol="BTCUSDT", limit=1000))
        sl = make_client_order_id("mlr", "BTCUSDT", T, "sl")
        check("futures_algoOrder_post", c.futures_create_order(symbol="BTCUSDT", side="SELL", type="STOP_MARKET",
                                                               triggerPrice="39000", closePosition="true",
                                                               workingType="CONTRACT_PRICE", clientAlgoId=sl))
        check("futures_openAlgoOrders", c.futures_get_open_orders(symbol="BTCUSDT", conditional=True))
        check("futures_algoOrder_get", c.futures_get_order(symbol="BTCUSDT", clientAlgoId=sl))
        check("futures_algoOrder_delete", c.futures_cancel_order(symbol="BTCUSDT", clientAlgoId=sl))
        tp = make_client_order_id("mlr", "BTCUSDT", T, "tp")
        c.futures_create_order(symbol="BTCUSDT", side="SELL", type="TAKE_PROFIT_MARKET", triggerPrice="41000",
                               closePosition="true", workingType="CONTRACT_PRICE", clientAlgoId=tp)
        fx.set_price("BTCUSDT", "41000")                       # triggered: actualOrderId, actualPrice, executedQty
        check("futures_algoOrder_get", c.futures_get_order(symbol="BTCUSDT", clientAlgoId=tp))


def test_futures_listen_key_matches_the_documented_example():
    """POST and PUT /fapi/v1/listenKey (the user data stream's key, venue.futures_listen_key /
    futures_keep_listen_key) as served by tests/fake_user_stream.py."""
    import requests
    from fake_user_stream import FakeUserStream

    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures"):
        headers = {"X-MBX-APIKEY": fx.api_key}
        posted = requests.post(f"{fx.url}/fapi/v1/listenKey", headers=headers, timeout=5).json()
        check("futures_listenKey", posted)
        check("futures_listenKey", requests.put(f"{fx.url}/fapi/v1/listenKey", headers=headers, timeout=5).json())
