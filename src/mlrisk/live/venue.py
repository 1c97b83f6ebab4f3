"""Binance, the one venue: every python-binance method the bot calls, every request parameter, every
Binance error code and status, turned into normalised reports that execution consumes.

:class:`SpotVenue` (``/api``) and :class:`FuturesVenue` (USDT-M ``/fapi``, one-way mode) wrap one
signed :class:`mlrisk.exchange.ExchangeClient` (its retries, clock offset and error handling) for one
symbol. Their answers are :class:`OrderReport` (an order as the exchange says it is, our
:class:`~mlrisk.live.state.OrderStatus` included), :class:`FillReport` (one trade) and
:class:`PositionReport` (the futures position); balances are ``{asset: (free, locked)}``. Nothing in
:mod:`mlrisk.live.execution` sees a raw answer, an error code or a Binance status string.

Units: quantities ``Decimal`` base asset, prices and quote amounts ``Decimal`` quote asset, times
epoch ms UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mlrisk.live.filters import SymbolFilters, fmt, symbol_filters
from mlrisk.live.state import OrderRecord, OrderStatus

S = OrderStatus
ZERO = Decimal(0)
ORDER_NOT_FOUND = -2013                  # "Order does not exist."
ORDER_ARCHIVED = -2026                   # spot: "Order was canceled or expired with no executed qty over 90 days ago..."
#: errors.md: "-1006 UNEXPECTED_RESP ... Execution status unknown.", "-1007 TIMEOUT ... execution status unknown."
#: They come with HTTP 400 or 408; HTTP 408 (futures general-info: a backend timeout) and 503 with "Unknown
#: error" ("the API successfully sent the request but not get a response ... execution status is UNKNOWN")
#: are the same. An order answered so may have executed: it is queried, never recorded rejected.
UNKNOWN_OUTCOME_CODES = (-1006, -1007)
PAGE = 1000                              # allOrders / myTrades: "limit ... Maximum: 1000"
#: Binance order ``status`` values (spot and futures) mapped to ours (only here: execution sees ours).
BINANCE_STATUS: dict[str, OrderStatus] = {
    "NEW": S.OPEN, "PENDING_NEW": S.OPEN, "PARTIALLY_FILLED": S.OPEN, "PENDING_CANCEL": S.OPEN,
    "FILLED": S.FILLED, "CANCELED": S.CANCELLED, "EXPIRED": S.CANCELLED, "EXPIRED_IN_MATCH": S.CANCELLED,
    "REJECTED": S.REJECTED,
}
UNKNOWN_ORDER = -2011                    # "Unknown order sent." (a cancel of an order that is not there)
NO_NEED_TO_CHANGE_MARGIN_TYPE = -4046    # "No need to change margin type.": already isolated
#: futures conditional orders, placed through Binance's Algo Service (client id ``clientAlgoId``)
ALGO_TYPES = ("TAKE_PROFIT_MARKET", "STOP_MARKET")
#: algo order statuses (Binance's Algo Service) mapped to ours; FINISHED depends on the actual order's fill
ALGO_STATUS = {"NEW": S.OPEN, "TRIGGERING": S.OPEN, "TRIGGERED": S.OPEN, "CANCELED": S.CANCELLED,
               "EXPIRED": S.CANCELLED, "REJECTED": S.REJECTED}

Balances = dict[str, tuple[Decimal, Decimal]]


@dataclass(frozen=True)
class FillReport:
    """One trade: the exchange's ``trade_id``, ``price``, ``qty``, ``commission`` in
    ``commission_asset``, ``time_ms``, ``is_buyer`` (None when the answer does not say) and the
    exchange id of its order (``order_id``, None when the answer does not say)."""

    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool | None = None
    order_id: int | None = None


@dataclass(frozen=True)
class OrderReport:
    """An order as the exchange reports it. ``status``: ours; ``raw_status``: Binance's word (for the
    log); ``executed_qty`` / ``cumulative_quote``: None when the answer does not carry them;
    ``fills``: the trades the answer itself carries (a spot FULL response), None when it carries none
    (ask :meth:`trades` of ``trade_order_id``, the order whose trades are the fills: an algo order's
    triggered order); ``cancel_ack``: a cancel's bare acknowledgement of an algo order."""

    client_order_id: str
    exchange_order_id: int | None
    status: OrderStatus
    raw_status: str
    executed_qty: Decimal | None
    cumulative_quote: Decimal | None
    update_time_ms: int
    side: str = ""
    type: str = ""
    quantity: Decimal = ZERO
    price: Decimal | None = None
    reduce_only: bool = False
    trade_order_id: int | None = None
    fills: tuple[FillReport, ...] | None = None
    cancel_ack: bool = False
    reason: str = ""


@dataclass(frozen=True)
class PositionReport:
    """The exchange's position of one symbol: signed ``quantity`` (base asset, > 0 long) and average
    ``entry_price`` (None when flat)."""

    quantity: Decimal = ZERO
    entry_price: Decimal | None = None


def or_none(client: Any, method: str, codes: tuple[int, ...]) -> Callable[..., Any]:
    """``client.method`` as a callable for :meth:`~mlrisk.exchange.ExchangeClient.call` (named
    ``method`` in its messages) that returns None when Binance answers with one of ``codes``
    (e.g. -2013: no such order)."""
    from binance.exceptions import BinanceAPIException

    def call(**kw: Any) -> Any:
        try:
            return getattr(client, method)(**kw)
        except BinanceAPIException as e:
            if e.code in codes:
                return None
            raise

    call.__name__ = method
    return call


def is_unknown_outcome(e: Any) -> bool:
    """True when a ``BinanceAPIException`` says the request's execution status is unknown (see
    :data:`UNKNOWN_OUTCOME_CODES`): -1006/-1007 with any HTTP status, HTTP 408, HTTP 503 "Unknown error"."""
    status = int(getattr(e, "status_code", 0) or 0)
    return e.code in UNKNOWN_OUTCOME_CODES or status == 408 or (status == 503 and "unknown error" in str(e.message).lower())


def sent_once(client: Any, method: str) -> Callable[..., Any]:
    """``client.method`` for :meth:`~mlrisk.exchange.ExchangeClient.call` with ``idempotent=False``: an
    answer whose execution status is unknown (:func:`is_unknown_outcome`) raises
    :class:`~mlrisk.exchange.ExchangeOutcomeUnknown` (query it, never resend) instead of a refusal."""
    from binance.exceptions import BinanceAPIException

    from mlrisk.exchange import ExchangeOutcomeUnknown

    def call(**kw: Any) -> Any:
        try:
            return getattr(client, method)(**kw)
        except BinanceAPIException as e:
            if is_unknown_outcome(e):
                raise ExchangeOutcomeUnknown(
                    f"Binance answered {method} with HTTP {e.status_code}, code {e.code} (execution status unknown): "
                    "its outcome is unknown; query it before sending anything again") from None
            raise

    call.__name__ = method
    return call


def _price(x: Any) -> Decimal | None:
    p = Decimal(str(x)) if x not in (None, "") else ZERO
    return p if p else None


class _Venue:
    EXCHANGE_INFO = ""

    def __init__(self, exchange: Any, symbol: str) -> None:
        self.exchange, self.symbol = exchange, symbol

    def set_recv_window(self, ms: int) -> None:
        """Send ``recvWindow=ms`` on every signed request (python-binance's ``REQUEST_RECVWINDOW``, 10000 by
        default): a request the exchange has not executed within ``ms`` of its timestamp never will."""
        client = getattr(self.exchange, "client", None)
        if client is not None:
            client.REQUEST_RECVWINDOW = int(ms)

    def exchange_filters(self) -> SymbolFilters:
        """The symbol's filters (lot size, tick, minimum notional) from the exchange information."""
        return symbol_filters(self.exchange.call(self.EXCHANGE_INFO), self.symbol)


class SpotVenue(_Venue):
    """Binance spot for one symbol (see the module docstring)."""

    EXCHANGE_INFO = "get_exchange_info"

    def balances(self) -> Balances:
        """``{asset: (free, locked)}`` of the spot account."""
        acct = self.exchange.call("get_account")
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in acct.get("balances", [])}

    def place(self, o: OrderRecord) -> OrderReport:
        """Send a MARKET order once (``newOrderRespType=FULL``: the answer carries its fills)."""
        r = self.exchange.call(sent_once(self.exchange.client, "create_order"), idempotent=False, symbol=o.symbol,
                               side=o.side, type=o.type, quantity=str(o.quantity), newClientOrderId=o.client_order_id,
                               newOrderRespType="FULL")
        return self._report(r, with_fills=True)

    def query(self, o: OrderRecord) -> OrderReport | None:
        """The order by client id (GET order, "Memory => Database"); None when the exchange has no such
        order (-2013); an archived one (-2026: cancelled or expired with nothing executed) is reported
        cancelled with nothing executed."""
        from binance.exceptions import BinanceAPIException

        def get_order(**kw: Any) -> Any:
            try:
                return self.exchange.client.get_order(**kw)
            except BinanceAPIException as e:
                if e.code in (ORDER_NOT_FOUND, ORDER_ARCHIVED):
                    return {"archived": e.code == ORDER_ARCHIVED}
                raise

        r = self.exchange.call(get_order, symbol=o.symbol, origClientOrderId=o.client_order_id)
        if "archived" in r:
            if not r["archived"]:
                return None
            return OrderReport(o.client_order_id, o.exchange_order_id, S.CANCELLED, "ARCHIVED", ZERO, ZERO, 0, o.side, o.type,
                               o.quantity, reason="archived by Binance (-2026): cancelled or expired with nothing executed")
        return None if r is None else self._report(r)

    def find(self, o: OrderRecord, since_ms: int) -> OrderReport | None:
        """The order by client id in allOrders ("Database") from ``since_ms`` (ms UTC, less a minute for
        the clocks) on, every page; None when it is not there."""
        hits = [x for x in self._orders_from(start_ms=since_ms - 60_000) if x.get("clientOrderId") == o.client_order_id]
        return self._report(hits[-1]) if hits else None

    def open_orders(self) -> list[OrderReport]:
        return [self._report(x) for x in self.exchange.call("get_open_orders", symbol=self.symbol)]

    def all_orders(self, from_order_id: int | None = None, since_ms: int | None = None) -> list[OrderReport]:
        """The symbol's orders from exchange id ``from_order_id`` on (or from ``since_ms``, ms UTC), every
        page of 1000; with neither, the latest 1000."""
        return [self._report(x) for x in self._orders_from(from_order_id, since_ms)]

    def _orders_from(self, from_order_id: int | None = None, start_ms: int | None = None) -> list[dict[str, Any]]:
        kw: dict[str, Any] = {"orderId": from_order_id} if from_order_id else ({"startTime": start_ms} if start_ms else {})
        return self._pages("get_all_orders", kw, "orderId", "orderId")

    def _pages(self, method: str, kw: dict[str, Any], id_key: str, id_param: str) -> list[dict[str, Any]]:
        """Every page of ``method`` (allOrders / myTrades: "limit Maximum: 1000"; "If orderId/fromId is set, it
        will get orders/trades >= that id"): the next page starts after the last id. Without a start
        (``kw`` empty): the most recent page only."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.exchange.call(method, symbol=self.symbol, limit=PAGE, **kw)
            out += page
            if len(page) < PAGE or not kw:
                return out
            kw = {id_param: int(page[-1][id_key]) + 1}

    def trades(self, order_id: int | None = None, from_trade_id: int | None = None) -> list[FillReport]:
        """The trades of one order (``order_id``), or the symbol's trades from trade id ``from_trade_id`` on
        (every page), or (both None) the latest 1000."""
        if order_id is not None:
            rows = self.exchange.call("get_my_trades", symbol=self.symbol, orderId=order_id)
        else:
            rows = self._pages("get_my_trades", {"fromId": from_trade_id} if from_trade_id else {}, "id", "fromId")
        return [_fill(t, int(t.get("time", 0))) for t in rows]

    def _report(self, r: dict[str, Any], with_fills: bool = False) -> OrderReport:
        at = int(r.get("transactTime", r.get("updateTime", 0)))
        fills = r.get("fills") if with_fills else None
        executed = r.get("executedQty")
        quote = r.get("cummulativeQuoteQty")
        oid = int(r["orderId"]) if r.get("orderId") is not None else None
        why = f"{r['status']} ({r['expiryReason']})" if r.get("expiryReason") else ""  # only for expired orders
        return OrderReport(
            r.get("clientOrderId", ""), oid, BINANCE_STATUS[r["status"]], r["status"],
            None if executed is None else Decimal(executed), None if quote is None else Decimal(quote), at,
            r.get("side", ""), r.get("type", ""), Decimal(r.get("origQty", "0")), _price(r.get("price")),
            bool(r.get("reduceOnly")), oid,
            None if fills is None else tuple(_fill(f, at, oid) for f in fills), reason=why)


def _fill(t: dict[str, Any], time_ms: int, order_id: int | None = None) -> FillReport:
    buyer = t.get("isBuyer", t.get("buyer"))
    oid = t.get("orderId", order_id)
    return FillReport(int(t.get("tradeId", t.get("id"))), Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"]),
                      t["commissionAsset"], time_ms, None if buyer is None else bool(buyer),
                      None if oid is None else int(oid))


class FuturesVenue(_Venue):
    """Binance USDT-M futures for one symbol, one-way mode (see the module docstring)."""

    EXCHANGE_INFO = "futures_exchange_info"

    # ------------------------------------------------------------------------------ setup
    def hedge_mode(self) -> bool:
        """True when the account is in hedge mode (``dualSidePosition``)."""
        return str(self.exchange.call("futures_get_position_mode").get("dualSidePosition")).lower() == "true"

    def set_isolated(self) -> bool:
        """Set the symbol's margin type ISOLATED: True when changed, False when it was already
        (-4046); :class:`~mlrisk.errors.ExchangeError` when it cannot be changed (e.g. -4048: a position
        or open orders)."""
        r = self.exchange.call(or_none(self.exchange.client, "futures_change_margin_type", (NO_NEED_TO_CHANGE_MARGIN_TYPE,)),
                               symbol=self.symbol, marginType="ISOLATED")
        return r is not None

    def is_isolated(self) -> bool:
        """True when the account lists the symbol with isolated margin."""
        rows = self.exchange.call("futures_account").get("positions", [])
        return any(r.get("symbol") == self.symbol and str(r.get("isolated")).lower() == "true" for r in rows)

    def set_leverage(self, leverage: int) -> int:
        """Set the symbol's leverage; returns the leverage the exchange reports."""
        r = self.exchange.call("futures_change_leverage", symbol=self.symbol, leverage=leverage)
        return int(r.get("leverage", leverage))

    # ---------------------------------------------------------------------------- account
    def balances(self) -> Balances:
        """``{asset: (available, wallet balance - available)}`` of the futures wallet."""
        acct = self.exchange.call("futures_account")
        return {a["asset"]: (Decimal(a["availableBalance"]), Decimal(a["walletBalance"]) - Decimal(a["availableBalance"]))
                for a in acct.get("assets", [])}

    def position(self) -> PositionReport:
        """The one-way position (``positionRisk``; V3 lists no row for a symbol without position or
        open orders: flat)."""
        rows = [r for r in self.exchange.call("futures_position_information", symbol=self.symbol)
                if r.get("symbol") == self.symbol and r.get("positionSide", "BOTH") == "BOTH"]
        if not rows:
            return PositionReport()
        amt, entry = Decimal(rows[0]["positionAmt"]), Decimal(rows[0]["entryPrice"])
        return PositionReport(amt, entry if amt != 0 else None)

    # ----------------------------------------------------------------------------- orders
    def place(self, o: OrderRecord) -> OrderReport:
        """Send an order once: an algo order (take-profit/stop) closes the whole position at its
        trigger (``closePosition``, contract price); MARKET/LIMIT (GTC) with ``reduceOnly`` when set."""
        if o.type in ALGO_TYPES:
            r = self.exchange.call("futures_create_order", idempotent=False, symbol=o.symbol, side=o.side, type=o.type,
                                   triggerPrice=fmt(o.price or ZERO), closePosition="true", workingType="CONTRACT_PRICE",
                                   clientAlgoId=o.client_order_id)
            return self._report(r, algo=True)
        kw: dict[str, Any] = dict(symbol=o.symbol, side=o.side, type=o.type, quantity=fmt(o.quantity),
                                  newClientOrderId=o.client_order_id, newOrderRespType="RESULT")
        if o.type == "LIMIT":
            kw.update(price=fmt(o.price or ZERO), timeInForce="GTC")
        if o.reduce_only:
            kw["reduceOnly"] = "true"
        return self._report(self.exchange.call("futures_create_order", idempotent=False, **kw))

    def query(self, o: OrderRecord) -> OrderReport | None:
        """The order (an algo order: with its triggered order's fate) by client id; None when absent."""
        algo = o.type in ALGO_TYPES
        key = "clientAlgoId" if algo else "origClientOrderId"
        r = self.exchange.call(or_none(self.exchange.client, "futures_get_order", (ORDER_NOT_FOUND,)),
                               symbol=o.symbol, **{key: o.client_order_id})
        return None if r is None else self._report(r, algo=algo)

    def cancel(self, o: OrderRecord) -> OrderReport | None:
        """Cancel by client id; None when the exchange has no such open order (-2011, -2013). An algo
        order's answer is a bare acknowledgement: query it for its fate."""
        algo = o.type in ALGO_TYPES
        key = "clientAlgoId" if algo else "origClientOrderId"
        r = self.exchange.call(or_none(self.exchange.client, "futures_cancel_order", (UNKNOWN_ORDER, ORDER_NOT_FOUND)),
                               symbol=self.symbol, **{key: o.client_order_id})
        if r is None:
            return None
        if algo:
            return OrderReport(o.client_order_id, None, S.CANCELLED, "", None, None, 0, o.side, o.type, ZERO, o.price, True,
                               cancel_ack=True)
        return self._report(r)

    def open_orders(self) -> list[OrderReport]:
        """Open regular orders, then open algo orders, of the symbol."""
        regular = [self._report(x) for x in self.exchange.call("futures_get_open_orders", symbol=self.symbol)]
        return regular + [self._report(x, algo=True)
                          for x in self.exchange.call("futures_get_open_orders", symbol=self.symbol, conditional=True)]

    def trades(self, order_id: int) -> list[FillReport]:
        """The trades of one order (``userTrades``)."""
        return [_fill(t, int(t["time"])) for t in self.exchange.call("futures_account_trades", symbol=self.symbol,
                                                                       orderId=order_id)]

    def _report(self, r: dict[str, Any], algo: bool = False) -> OrderReport:
        at = int(r.get("updateTime", r.get("time", 0)) or 0)
        if not algo:
            oid = int(r["orderId"])
            return OrderReport(r.get("clientOrderId", ""), oid, BINANCE_STATUS[r["status"]], r["status"],
                               Decimal(r.get("executedQty", "0")), Decimal(r.get("cumQuote", "0")), at, r.get("side", ""),
                               r.get("type", ""), Decimal(r.get("origQty", "0")), _price(r.get("price")),
                               bool(r.get("reduceOnly")), oid)
        cid, side, typ = r.get("clientAlgoId", ""), r.get("side", ""), r.get("orderType", r.get("type", ""))
        trigger = _price(r.get("triggerPrice"))
        if "algoStatus" not in r:  # a cancel's acknowledgement
            return OrderReport(cid, None, S.CANCELLED, "", None, None, at, side, typ, ZERO, trigger, True,
                               cancel_ack=True)
        raw = r["algoStatus"]
        status = ALGO_STATUS.get(raw, S.OPEN)
        oid = int(r["actualOrderId"]) if str(r.get("actualOrderId") or "").isdigit() else None
        executed, quote = ZERO, ZERO
        if oid is not None:
            actual = self.exchange.call("futures_get_order", symbol=self.symbol, orderId=oid)
            executed, quote = Decimal(actual["executedQty"]), Decimal(actual["cumQuote"])
            status = BINANCE_STATUS[actual["status"]]  # the triggered order's fate is the algo order's
            status = S.CANCELLED if status is S.REJECTED else status
        elif raw == "FINISHED":
            status = S.CANCELLED
        return OrderReport(cid, oid if oid is not None else int(r["algoId"]), status, raw, executed, quote, at, side, typ,
                           ZERO, trigger, True, oid)


__all__ = ["ALGO_STATUS", "ALGO_TYPES", "BINANCE_STATUS", "is_unknown_outcome", "sent_once", "FillReport", "FuturesVenue", "OrderReport", "PositionReport", "SpotVenue",
           "or_none"]
