"""Binance, the one venue: every python-binance method the bot calls, every request parameter, every
Binance error code and status, turned into normalised reports that execution consumes.

:class:`SpotVenue` (``/api``) and :class:`FuturesVenue` (USDT-M ``/fapi``, one-way mode) wrap one
signed :class:`mlrisk.exchange.ExchangeClient` (its retries, clock offset and error handling) for one
symbol. Their answers are :class:`OrderReport` (an order as the exchange says it is, our
:class:`~mlrisk.live.state.OrderStatus` included), :class:`FillReport` (one trade) and
:class:`PositionReport` (the futures position); balances are ``{asset: (free, locked)}``. Nothing in
:mod:`mlrisk.live.execution` sees a raw answer, an error code or a Binance status string.

The user data stream's messages are parsed here too (:func:`parse_spot_event`,
:func:`parse_futures_event`, the subscription request and the stream URLs) into the normalised
updates :class:`OrderUpdate`, :class:`AlgoUpdate`, :class:`PositionUpdate`, :class:`BalanceUpdate`
(and :class:`StreamControl`), which :mod:`mlrisk.live.user_stream` queues and execution applies.

Units: quantities ``Decimal`` base asset, prices and quote amounts ``Decimal`` quote asset, times
epoch ms UTC.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union

from mlrisk.live.filters import SymbolFilters, fmt, symbol_filters
from mlrisk.live.state import BINANCE_STATUS, OrderRecord, OrderStatus

S = OrderStatus
ZERO = Decimal(0)
ORDER_NOT_FOUND = -2013                  # "Order does not exist."
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


def _price(x: Any) -> Decimal | None:
    p = Decimal(str(x)) if x not in (None, "") else ZERO
    return p if p else None


class _Venue:
    EXCHANGE_INFO = ""

    def __init__(self, exchange: Any, symbol: str) -> None:
        self.exchange, self.symbol = exchange, symbol

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
        r = self.exchange.call("create_order", idempotent=False, symbol=o.symbol, side=o.side, type=o.type,
                               quantity=str(o.quantity), newClientOrderId=o.client_order_id, newOrderRespType="FULL")
        return self._report(r, with_fills=True)

    def query(self, o: OrderRecord) -> OrderReport | None:
        """The order by client id; None when the exchange has no such order."""
        r = self.exchange.call(or_none(self.exchange.client, "get_order", (ORDER_NOT_FOUND,)), symbol=o.symbol,
                               origClientOrderId=o.client_order_id)
        return None if r is None else self._report(r)

    def open_orders(self) -> list[OrderReport]:
        return [self._report(x) for x in self.exchange.call("get_open_orders", symbol=self.symbol)]

    def all_orders(self) -> list[OrderReport]:
        """The symbol's latest orders (up to 1000)."""
        return [self._report(x) for x in self.exchange.call("get_all_orders", symbol=self.symbol, limit=1000)]

    def trades(self, order_id: int | None = None) -> list[FillReport]:
        """The trades of one order, or (``order_id`` None) the symbol's latest 1000."""
        kw: dict[str, Any] = {"orderId": order_id} if order_id is not None else {"limit": 1000}
        return [_fill(t, int(t.get("time", 0))) for t in self.exchange.call("get_my_trades", symbol=self.symbol, **kw)]

    def _report(self, r: dict[str, Any], with_fills: bool = False) -> OrderReport:
        at = int(r.get("transactTime", r.get("updateTime", 0)))
        fills = r.get("fills") if with_fills else None
        executed = r.get("executedQty")
        quote = r.get("cummulativeQuoteQty")
        oid = int(r["orderId"]) if r.get("orderId") is not None else None
        return OrderReport(
            r.get("clientOrderId", ""), oid, BINANCE_STATUS[r["status"]], r["status"],
            None if executed is None else Decimal(executed), None if quote is None else Decimal(quote), at,
            r.get("side", ""), r.get("type", ""), Decimal(r.get("origQty", "0")), _price(r.get("price")),
            bool(r.get("reduceOnly")), oid,
            None if fills is None else tuple(_fill(f, at, oid) for f in fills))


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


__all__ = ["ALGO_STATUS", "ALGO_TYPES", "FillReport", "FuturesVenue", "OrderReport", "PositionReport", "SpotVenue",
           "or_none"]


# ==================================================================== user data stream: normalised updates
@dataclass(frozen=True)
class LastFill:
    """One trade of an order: ``price`` (quote per base), ``qty`` (base), ``commission`` in
    ``commission_asset``, ``time_ms`` (trade time)."""

    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int


@dataclass(frozen=True)
class OrderUpdate:
    """An order's new state. ``executed_qty`` (base) and ``cumulative_quote`` (quote) are totals so far;
    ``fill`` is the trade that caused this update, if any; ``liquidation``: an order the exchange sent to
    liquidate (or auto-deleverage) the position; ``expiry_reason``: the exchange's code, when expired."""

    symbol: str
    client_order_id: str
    exchange_order_id: int
    status: OrderStatus
    exchange_status: str
    executed_qty: Decimal
    cumulative_quote: Decimal
    fill: LastFill | None
    expiry_reason: str | None
    liquidation: bool
    event_ms: int


@dataclass(frozen=True)
class AlgoUpdate:
    """A futures algo (conditional) order's new state; ``actual_order_id``: the order it placed when
    triggered (None before)."""

    symbol: str
    client_algo_id: str
    algo_id: int
    algo_status: str
    actual_order_id: int | None
    event_ms: int

    @property
    def status(self) -> OrderStatus:
        """Ours (:data:`ALGO_STATUS`); ``FINISHED`` (the triggered order filled or cancelled) is
        UNKNOWN here: the triggered order says which."""
        return ALGO_STATUS.get(self.algo_status, S.UNKNOWN)


@dataclass(frozen=True)
class PositionUpdate:
    """A futures position after a change: signed ``qty`` (base; negative = short), ``entry_price``
    (quote), ``reason`` as the exchange gives it (e.g. ``ORDER``, ``FUNDING_FEE``)."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    reason: str
    event_ms: int


@dataclass(frozen=True)
class BalanceUpdate:
    """An asset's balance after a change (``free``/``locked``, or the futures wallet balance as
    ``free`` with ``locked`` 0), or a bare ``delta`` (deposit, withdrawal, transfer) with ``free`` None."""

    asset: str
    free: Decimal | None
    locked: Decimal | None
    delta: Decimal | None
    reason: str
    event_ms: int


@dataclass(frozen=True)
class StreamControl:
    """Not an account change: the stream must be renewed. ``kind``: ``expired`` (listen key),
    ``terminated`` (subscription ended) or ``shutdown`` (the server is going away)."""

    kind: Literal["expired", "terminated", "shutdown"]
    event_ms: int


Update = Union[OrderUpdate, AlgoUpdate, PositionUpdate, BalanceUpdate]
Parsed = Union[Update, StreamControl]


# ==================================================================== user data stream: Binance parsing
def _d(x: Any) -> Decimal:
    return Decimal(str(x)) if x not in (None, "") else Decimal(0)


def _status(s: str) -> OrderStatus:
    return BINANCE_STATUS.get(s, OrderStatus.UNKNOWN)


def parse_spot_event(message: Any) -> list[Parsed]:
    """Normalised updates in one spot WebSocket API message (``{"subscriptionId", "event"}``, or the
    bare event); [] for request answers and events not used. Source: user-data-stream.md
    (``executionReport``, ``outboundAccountPosition``, ``balanceUpdate``, ``eventStreamTerminated``),
    web-socket-api.md (``serverShutdown``)."""
    if not isinstance(message, dict):
        return []
    ev = message.get("event", message)
    if not isinstance(ev, dict):
        return []
    kind, at = ev.get("e"), int(ev.get("E") or 0)
    if kind == "executionReport":
        # A cancel carries the cancel request's id in "c" and the order's own id in "C".
        cid = ev.get("C") if ev.get("x") == "CANCELED" and ev.get("C") else ev.get("c")
        fill = None
        if ev.get("x") == "TRADE":
            fill = LastFill(int(ev["t"]), _d(ev.get("L")), _d(ev.get("l")), _d(ev.get("n")), str(ev.get("N") or ""),
                            int(ev.get("T") or at))
        return [OrderUpdate(str(ev.get("s")), str(cid), int(ev["i"]), _status(str(ev.get("X"))), str(ev.get("X")),
                            _d(ev.get("z")), _d(ev.get("Z")), fill, ev.get("eR"), False, at)]
    if kind == "outboundAccountPosition":
        return [BalanceUpdate(str(b["a"]), _d(b.get("f")), _d(b.get("l")), None, "ACCOUNT", at) for b in ev.get("B") or []]
    if kind == "balanceUpdate":
        return [BalanceUpdate(str(ev.get("a")), None, None, _d(ev.get("d")), "BALANCE", at)]
    if kind == "eventStreamTerminated":
        return [StreamControl("terminated", at)]
    if kind == "serverShutdown":
        return [StreamControl("shutdown", at)]
    return []


#: Futures client order ids of orders the exchange sends itself (developers.binance.com
#: usds-margined-futures "Event: Order Update", "Liquidation and ADL").
FUTURES_LIQUIDATION_PREFIXES = ("autoclose-", "adl_autoclose")


def parse_futures_event(message: Any) -> list[Parsed]:
    """Normalised updates in one USDT-M futures user-data message (the bare event, or one wrapped as
    ``{"stream", "data"}``); [] for events not used. Sources: developers.binance.com
    usds-margined-futures user-data-streams "Event: Order Update" (``ORDER_TRADE_UPDATE``; ``x``
    ``CALCULATED`` = liquidation execution), "Event: Balance and Position Update" (``ACCOUNT_UPDATE``,
    reason ``m``; one-way mode: positions other than ``ps`` BOTH are skipped), "Event: Algo Order Update"
    (``ALGO_UPDATE``), "Event: User Data Stream Expired"."""
    if not isinstance(message, dict):
        return []
    ev = message["data"] if isinstance(message.get("data"), dict) else message
    kind, at = ev.get("e"), int(ev.get("E") or 0)
    if kind == "ORDER_TRADE_UPDATE":
        o = ev.get("o") or {}
        fill = None
        if o.get("x") in ("TRADE", "CALCULATED") and _d(o.get("l")) > 0:
            fill = LastFill(int(o.get("t") or 0), _d(o.get("L")), _d(o.get("l")), _d(o.get("n")), str(o.get("N") or ""),
                            int(o.get("T") or at))
        cid = str(o.get("c"))
        liq = cid.startswith(FUTURES_LIQUIDATION_PREFIXES) or o.get("o") == "LIQUIDATION" or o.get("x") == "CALCULATED"
        er = o.get("er")
        return [OrderUpdate(str(o.get("s")), cid, int(o["i"]), _status(str(o.get("X"))), str(o.get("X")), _d(o.get("z")),
                            _d(o.get("z")) * _d(o.get("ap")), fill, None if er in (None, "0", 0) else str(er), liq, at)]
    if kind == "ACCOUNT_UPDATE":
        a = ev.get("a") or {}
        reason = str(a.get("m") or "")
        out: list[Parsed] = [BalanceUpdate(str(b["a"]), _d(b.get("wb")), Decimal(0), None, reason, at) for b in a.get("B") or []]
        out += [PositionUpdate(str(p["s"]), _d(p.get("pa")), _d(p.get("ep")), reason, at)
                for p in a.get("P") or [] if p.get("ps", "BOTH") == "BOTH"]
        return out
    if kind == "ALGO_UPDATE":
        o = ev.get("o") or {}
        ai = o.get("ai")
        return [AlgoUpdate(str(o.get("s")), str(o.get("caid")), int(o.get("aid") or 0), str(o.get("X")),
                           int(ai) if ai not in (None, "", "0", 0) else None, at)]
    if kind == "listenKeyExpired":
        return [StreamControl("expired", at)]
    return []


def ws_api_signature(params: dict[str, Any], api_secret: str) -> str:
    """The HMAC signature of a WebSocket API request (web-socket-api.md "SIGNED request security"):
    the params but ``signature`` sorted by name as ``k=v`` joined by ``&``, UTF-8, HMAC-SHA-256 with the
    secret, hex."""
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "signature")
    return hmac.new(api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def spot_subscription(exchange: Any, request_id: str, local_ms: int) -> dict[str, Any]:
    """The signed subscription request for ``exchange``'s API key and secret (never logged), its
    timestamp ``local_ms`` corrected by the client's clock offset (ms)."""
    c = exchange.client
    return spot_subscribe_request(c.API_KEY, c.API_SECRET, local_ms + int(exchange.offset_ms), request_id)


def futures_listen_key(exchange: Any) -> str:
    """``POST /fapi/v1/listenKey``: the active key (its validity extended 60 min) or a new one."""
    return str(exchange.call("futures_stream_get_listen_key"))


def futures_keep_listen_key(exchange: Any, key: str) -> None:
    """``PUT /fapi/v1/listenKey``: 60 more minutes; raises (-1125) when the key no longer exists."""
    exchange.call("futures_stream_keepalive", listenKey=key)


def futures_close_listen_key(exchange: Any, key: str) -> None:
    """``DELETE /fapi/v1/listenKey``: the stream closes."""
    exchange.call("futures_stream_close", listenKey=key)


def spot_subscribe_request(api_key: str, api_secret: str, timestamp_ms: int, request_id: str) -> dict[str, Any]:
    """The ``userDataStream.subscribe.signature`` request (web-socket-api.md "Subscribe to User Data
    Stream through signature subscription": any API key type)."""
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp_ms}
    params["signature"] = ws_api_signature(params, api_secret)
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


#: how the futures listen key goes into the private stream URL: ``query`` = ``{url}/ws?listenKey={key}``
#: (the 2026 "Important WebSocket Change Notice" example), ``path`` = ``{url}/ws/{key}`` (the older form);
#: which one the 2026 ``/private`` host accepts is a check to do on first use (docs/live.md)
LISTEN_KEY_FORMS = ("query", "path")


def futures_stream_url(private_url: str, listen_key: str, form: str = "query") -> str:
    """The futures user-data connection for ``listen_key`` on ``private_url`` (like
    ``wss://fstream.binance.com/private``), in ``form`` (:data:`LISTEN_KEY_FORMS`)."""
    base = private_url.rstrip("/")
    if form == "path":
        return f"{base}/ws/{listen_key}"
    if form == "query":
        return f"{base}/ws?listenKey={listen_key}"
    raise ValueError(f"listen key form must be one of {LISTEN_KEY_FORMS}, not {form!r}")
