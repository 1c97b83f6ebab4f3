"""The venue turns Binance's raw answers into reports (tests with a stub client: no network)."""

from decimal import Decimal as D

import pytest
from binance.exceptions import BinanceAPIException

from mlrisk.live.state import OrderRecord, OrderStatus as S
from mlrisk.live.venue import FuturesVenue, SpotVenue


class _Resp:
    status_code = 400
    text = ""

    def __init__(self, code: int) -> None:
        self.text = f'{{"code": {code}, "msg": "x"}}'


class StubExchange:
    """An ExchangeClient stand-in: ``answers[method]`` is returned (or raised) for each call, calls are logged."""

    def __init__(self, answers: dict) -> None:
        self.answers, self.calls = answers, []
        self.client = self

    def __getattr__(self, method):  # python-binance client methods, reached through or_none
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda **kw: self._answer(method, kw)

    def call(self, method, /, *, idempotent: bool = True, **kw):
        return method(**kw) if callable(method) else self._answer(method, kw)

    def _answer(self, method: str, kw: dict):
        self.calls.append((method, kw))
        a = self.answers[method]
        a = a(kw) if callable(a) else a
        if isinstance(a, Exception):
            raise a
        return a


def _api_error(code: int) -> BinanceAPIException:
    return BinanceAPIException(_Resp(code), 400, _Resp(code).text)


def _order(**kw) -> OrderRecord:
    base = dict(client_order_id="mlr-BTCUSDT-x-entry", symbol="BTCUSDT", side="BUY", type="MARKET",
                quantity=D("0.01"), candle_open_ms=0, leg="entry")
    return OrderRecord(**{**base, **kw})


def test_spot_full_answer_carries_its_fills_and_a_query_none():
    ex = StubExchange({"create_order": {"orderId": 7, "clientOrderId": "c", "status": "FILLED", "executedQty": "0.01",
                                        "cummulativeQuoteQty": "400", "transactTime": 123, "side": "BUY", "type": "MARKET",
                                        "origQty": "0.01", "fills": [{"tradeId": 9, "price": "40000", "qty": "0.01",
                                                                      "commission": "0.00001", "commissionAsset": "BTC"}]}})
    r = SpotVenue(ex, "BTCUSDT").place(_order())
    assert (r.status, r.raw_status, r.exchange_order_id, r.executed_qty, r.cumulative_quote, r.update_time_ms) == \
        (S.FILLED, "FILLED", 7, D("0.01"), D("400"), 123)
    assert [(f.trade_id, f.price, f.qty, f.commission, f.commission_asset) for f in r.fills] == \
        [(9, D("40000"), D("0.01"), D("0.00001"), "BTC")]
    assert ex.calls[0][1]["newClientOrderId"] == "mlr-BTCUSDT-x-entry" and ex.calls[0][1]["newOrderRespType"] == "FULL"
    missing = StubExchange({"get_order": _api_error(-2013)})
    assert SpotVenue(missing, "BTCUSDT").query(_order()) is None                 # -2013: no such order
    other = StubExchange({"get_order": _api_error(-1021)})
    with pytest.raises(BinanceAPIException):
        SpotVenue(other, "BTCUSDT").query(_order())                             # any other code is an error


def test_futures_algo_reports_follow_the_triggered_order():
    algo = _order(type="STOP_MARKET", leg="sl", side="SELL", price=D("39000"), reduce_only=True)
    answers = {"futures_get_order": lambda kw: (
        {"orderId": 55, "status": "FILLED", "executedQty": "0.01", "cumQuote": "390"} if "orderId" in kw else
        {"clientAlgoId": algo.client_order_id, "algoId": 3, "algoStatus": "FINISHED", "actualOrderId": "55",
         "side": "SELL", "orderType": "STOP_MARKET", "triggerPrice": "39000"})}
    r = FuturesVenue(StubExchange(answers), "BTCUSDT").query(algo)
    assert (r.status, r.raw_status, r.exchange_order_id, r.trade_order_id, r.executed_qty) == (S.FILLED, "FINISHED", 55, 55, D("0.01"))
    answers["futures_get_order"] = {"clientAlgoId": algo.client_order_id, "algoId": 3, "algoStatus": "FINISHED",
                                    "actualOrderId": ""}
    r = FuturesVenue(StubExchange(answers), "BTCUSDT").query(algo)
    assert (r.status, r.exchange_order_id, r.trade_order_id) == (S.CANCELLED, 3, None)  # finished without an order
    answers["futures_get_order"] = {"clientAlgoId": algo.client_order_id, "algoId": 3, "algoStatus": "NEW"}
    assert FuturesVenue(StubExchange(answers), "BTCUSDT").query(algo).status is S.OPEN
    ex = StubExchange({"futures_cancel_order": {"code": "200", "msg": "success"}})
    assert FuturesVenue(ex, "BTCUSDT").cancel(algo).cancel_ack and ex.calls[0][1]["clientAlgoId"] == algo.client_order_id
    gone = StubExchange({"futures_cancel_order": _api_error(-2011)})
    assert FuturesVenue(gone, "BTCUSDT").cancel(_order()) is None                # -2011: not open at the exchange


def test_futures_position_setup_and_trades():
    ex = StubExchange({
        "futures_position_information": [{"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "-0.02",
                                          "entryPrice": "41000"}],
        "futures_change_margin_type": _api_error(-4046), "futures_get_position_mode": {"dualSidePosition": False},
        "futures_account_trades": [{"id": 1, "price": "41000", "qty": "0.02", "commission": "0.3",
                                    "commissionAsset": "USDT", "time": 77, "buyer": False, "orderId": 5}]})
    v = FuturesVenue(ex, "BTCUSDT")
    assert (v.position().quantity, v.position().entry_price) == (D("-0.02"), D("41000"))
    assert v.set_isolated() is False and v.hedge_mode() is False                  # -4046: already isolated
    assert [(t.trade_id, t.time_ms, t.is_buyer, t.order_id) for t in v.trades(5)] == [(1, 77, False, 5)]
    flat = StubExchange({"futures_position_information": []})
    assert FuturesVenue(flat, "BTCUSDT").position().quantity == 0 and FuturesVenue(flat, "BTCUSDT").position().entry_price is None
