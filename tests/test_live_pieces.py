"""The live foundations used together, by hand (the bot's loop does not exist yet): an order is
sized by the exchange's filters, named by its candle, written ahead, sent through python-binance to
the fake exchange, its response is lost, and a query by client id - not a resend - settles it."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException

from fake_exchange import FakeExchange
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.filters import prepare_order, symbol_filters
from mlrisk.live.state import NewOrder, OrderStatus, StateStore, StepState

T = 1_700_000_000_000 // 3_600_000 * 3_600_000


def send(client: Client, store: StateStore, cid: str) -> None:
    """Send a recorded pending order; any transport failure makes it unknown (never resent here)."""
    o = store.order(cid)
    try:
        r = client.create_order(symbol=o.symbol, side=o.side, type=o.type, quantity=str(o.quantity), newClientOrderId=cid)
    except (requests.exceptions.RequestException, BinanceAPIException) as e:
        if isinstance(e, BinanceAPIException) and e.status_code < 500:
            store.transition(cid, OrderStatus.REJECTED, reason=f"{e.code} {e.message}")
        else:
            store.transition(cid, OrderStatus.UNKNOWN, reason=type(e).__name__)
        return
    store.transition(cid, r["status"], exchange_order_id=r["orderId"], executed_qty=r["executedQty"],
                     cumulative_quote=r["cummulativeQuoteQty"])


def settle(client: Client, store: StateStore, cid: str) -> None:
    """Query an order whose fate is unknown by its client id and record the answer."""
    o = store.order(cid)
    try:
        q = client.get_order(symbol=o.symbol, origClientOrderId=cid)
    except BinanceAPIException as e:
        if e.code == -2013 and o.status is OrderStatus.UNKNOWN:
            store.transition(cid, OrderStatus.PENDING_SUBMIT, reason="not at the exchange: may be sent again")
            return
        raise
    store.transition(cid, q["status"], exchange_order_id=q["orderId"], executed_qty=q["executedQty"],
                     cumulative_quote=q["cummulativeQuoteQty"])


@pytest.mark.parametrize("fault, executed", [("lost", True), ("timeout", False)])
def test_lost_or_timed_out_order_is_queried_not_resent(tmp_path, fault, executed):
    with FakeExchange(balances={"USDT": "1000"}) as fx:
        client = Client(fx.api_key, fx.api_secret, requests_params={"timeout": 0.5}, ping=False)
        client.API_URL = f"{fx.url}/api"
        f = symbol_filters(client.get_exchange_info(), "BTCUSDT")
        prepared = prepare_order(f, "BUY", "MARKET", 100 / 40000.123, reference_price=40000.123)   # ~100 USDT
        cid = make_client_order_id("mlr", "BTCUSDT", T, "entry")
        path = tmp_path / "state.sqlite"
        with StateStore(path, symbol="BTCUSDT", interval="1h") as store:
            store.commit_candle(T, [NewOrder(cid, "BTCUSDT", "BUY", "MARKET", prepared.quantity, T, "entry")],
                                StepState(1, b"engine state", T))
            fx.schedule(fault, method="POST", delay_s=1.0)
            send(client, store, cid)
            assert store.order(cid).status is OrderStatus.UNKNOWN

        with StateStore(path, symbol="BTCUSDT", interval="1h") as store:   # e.g. after a restart
            assert [o.client_order_id for o in store.orders_to_reconcile()] == [cid]
            settle(client, store, cid)
            if executed:
                rec = store.order(cid)
                assert rec.status is OrderStatus.FILLED and rec.executed_qty == D("0.00249")  # 0.0024999 truncated to the step
            else:
                assert store.order(cid).status is OrderStatus.PENDING_SUBMIT
                send(client, store, cid)   # proven absent: sent again under the same id
                assert store.order(cid).status is OrderStatus.FILLED
            assert store.orders_to_reconcile() == [] and store.last_processed_candle() == T
        assert len(fx.orders) == 1 and len(fx.orders_with_client_id(cid)) == 1   # exactly one order exists
        assert fx.balance("BTC")[0] == D("0.00249") - D("0.00000249")   # less the 0.1 % fee in BTC
