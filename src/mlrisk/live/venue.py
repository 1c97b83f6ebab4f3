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

from mlrisk.data.derivatives import HOUR_MS, funding_interval_hours
from mlrisk.errors import ExchangeError
from mlrisk.live.filters import SymbolFilters, fmt, symbol_filters
from mlrisk.live.state import Funding, OrderRecord, OrderStatus

S = OrderStatus
ZERO = Decimal(0)
TRADE_WINDOW_MS = 7 * 86_400_000        # futures userTrades: startTime-endTime at most 7 days
TRADE_PAGE = 1000                        # futures userTrades: limit max 1000
INCOME_PAGE = 1000                       # futures income: "limit ... Default 100; max 1000"
OI_PAGE = 500                            # futures/data/openInterestHist: "limit ... default 30, max 500"
#: futures income type of a funding settlement (Get Income History, ``incomeType``)
FUNDING_FEE = "FUNDING_FEE"
#: futures order queries no longer find a CANCELED/EXPIRED order with no fill 3 days after its creation
FORGOTTEN_AFTER_MS = 3 * 86_400_000
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
#: algo order statuses (Binance's Algo Service, "Event: Algo Order Update") mapped to ours; FINISHED depends on
#: the actual order's fill. TRIGGERING/TRIGGERED (``actualOrderId`` may still be "") stay open. REJECTED ("denied
#: by the matching engine, such as ... margin check failures") comes only after the order was accepted and
#: triggered: it ends the open order as cancelled (``raw_status`` keeps "REJECTED"), like a triggered order the
#: matching engine rejects; the futures execution then re-protects the position (ALGO_REJECTED_AT_TRIGGER).
ALGO_STATUS = {"NEW": S.OPEN, "TRIGGERING": S.OPEN, "TRIGGERED": S.OPEN, "CANCELED": S.CANCELLED,
               "EXPIRED": S.CANCELLED, "REJECTED": S.CANCELLED}
ALGO_REJECTED_AT_TRIGGER = "REJECTED"

Balances = dict[str, tuple[Decimal, Decimal]]

#: USDT-M futures refusals of a new order (https://developers.binance.com/docs/derivatives/usds-margined-futures/
#: error-code): code -> (kind, what). Kinds: ``filters`` (the symbol's filters: the order is skipped), ``margin``,
#: ``duplicate`` (-4116: "ClientOrderId is duplicated": an open order has this client id: query it),
#: ``close_position_exists`` (-4130: an open closePosition stop/take-profit in that direction exists: adopt it).
FUTURES_REFUSALS: dict[int, tuple[str, str]] = {
    -4164: ("filters", "min notional"), -4014: ("filters", "tick size"), -1111: ("filters", "precision"),
    -4003: ("filters", "quantity <= 0"), -4004: ("filters", "quantity < min"), -4005: ("filters", "quantity > max"),
    -4013: ("filters", "price < min"), -4023: ("filters", "step size"), -2019: ("margin", "margin insufficient"),
    -4116: ("duplicate", "client id of an open order"),
    -4130: ("close_position_exists", "an open closePosition order in this direction exists"),
}


class OrderRefused(Exception):
    """A new futures order refused for a reason execution acts on (``kind``, see :data:`FUTURES_REFUSALS`);
    ``str()`` is one line: ``refused by Binance (<code> <what>): <Binance's message>``. Not executed."""

    def __init__(self, kind: str, line: str) -> None:
        super().__init__(line)
        self.kind = kind


def futures_refusal(code: int, message: str) -> tuple[str, str]:
    """(kind, one-line reason) of a futures refusal code in :data:`FUTURES_REFUSALS`."""
    kind, what = FUTURES_REFUSALS[code]
    return kind, f"refused by Binance ({code} {what}): " + " ".join(str(message).split())[:160]


def _refusing(client: Any, method: str) -> Callable[..., Any]:
    """``client.method`` sent once (:func:`sent_once`: an unknown execution status raises
    :class:`~mlrisk.exchange.ExchangeOutcomeUnknown`) that raises :class:`OrderRefused` for a code in
    :data:`FUTURES_REFUSALS`."""
    from binance.exceptions import BinanceAPIException

    once = sent_once(client, method)

    def call(**kw: Any) -> Any:
        try:
            return once(**kw)
        except BinanceAPIException as e:
            if e.code in FUTURES_REFUSALS:
                raise OrderRefused(*futures_refusal(e.code, e.message)) from None
            raise

    call.__name__ = method
    return call


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
    mark_price: Decimal | None = None


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


@dataclass(frozen=True)
class VenueCheck:
    """One assumption the bot makes about the venue (``name``), whether it ``held`` and a one-line ``detail``."""

    name: str
    held: bool
    detail: str


CHECK_CLIENT_ID = "mlr-VENUECHECK-0-none"   # a client id no order of the bot ever has (its time field is 0)
DAY_MS = 86_400_000


def _check(name: str, probe: Callable[[], tuple[bool, str]]) -> VenueCheck:
    """Run one read-only ``probe`` (returns (held, detail)); an exception is a failed check with its one-line text."""
    try:
        held, detail = probe()
    except Exception as e:  # noqa: BLE001 - every failure is reported as the check's answer
        held, detail = False, " ".join(str(e).split())[:200] or type(e).__name__
    return VenueCheck(name, held, detail)


def _error_code(client: Any, method: str, **kw: Any) -> int | None:
    """The Binance error code ``client.method(**kw)`` answers with (None: it answered without error)."""
    from binance.exceptions import BinanceAPIException

    try:
        getattr(client, method)(**kw)
    except BinanceAPIException as e:
        return int(e.code)
    return None


def _code_check(client: Any, method: str, want: int, **kw: Any) -> tuple[bool, str]:
    code = _error_code(client, method, **kw)
    return code == want, f"{method} of an unknown id answers {code} (the bot expects {want})"


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


def repeatable(client: Any, method: str, tries: int = 3, none_on: tuple[int, ...] = ()) -> Callable[..., Any]:
    """``client.method`` for a request that is safe to send again (a setting such as the leverage or the
    margin type): an answer whose execution status is unknown (:func:`is_unknown_outcome`) is sent again, up
    to ``tries`` times in all (the last answer's error then goes up); an answer with one of ``none_on``'s
    codes returns None (as :func:`or_none`)."""
    from binance.exceptions import BinanceAPIException

    def call(**kw: Any) -> Any:
        for left in range(tries - 1, -1, -1):
            try:
                return getattr(client, method)(**kw)
            except BinanceAPIException as e:
                if e.code in none_on:
                    return None
                if not left or not is_unknown_outcome(e):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

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

    def _common_checks(self) -> list[VenueCheck]:
        def clock() -> tuple[bool, str]:
            self.exchange.server_time_ms()
            off = int(self.exchange.offset_ms)
            return (abs(off) < 1000,
                    f"server time read; local clock offset {off} ms (a signed request needs timestamp < serverTime + 1 s)")

        def filters() -> tuple[bool, str]:
            f = self.exchange_filters()
            return (f.tick_size > 0 and f.step_size > 0,
                    f"{self.symbol}: tick {fmt(f.tick_size)}, step {fmt(f.step_size)}, min notional {fmt(f.min_notional)}")

        return [_check("time", clock), _check("filters", filters)]


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

    def checks(self) -> list[VenueCheck]:
        """Read-only calls that confirm what the spot bot assumes (see docs/live.md "Checks to do on first use")."""
        c = self.exchange.client

        def account() -> tuple[bool, str]:
            b = self.balances()
            return True, f"account readable: {len(b)} assets"

        def trades() -> tuple[bool, str]:
            now = self.exchange.server_time_ms()
            rows = self.exchange.call("get_my_trades", symbol=self.symbol, startTime=now - DAY_MS + 1, endTime=now,
                                      limit=1000)
            return isinstance(rows, list), f"myTrades with a 24 h startTime-endTime window accepted ({len(rows)} rows)"

        return self._common_checks() + [
            _check("account", account),
            _check("open-orders", lambda: (True, f"openOrders readable: {len(self.open_orders())} open")),
            _check("order-not-found", lambda: _code_check(c, "get_order", ORDER_NOT_FOUND, symbol=self.symbol,
                                                          origClientOrderId=CHECK_CLIENT_ID)),
            _check("trade-window", trades)]

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
        (-4046, also after a resend: an unknown outcome, -1006/-1007, is sent again, the change being
        idempotent); :class:`~mlrisk.errors.ExchangeError` when it cannot be changed (e.g. -4048: a position
        or open orders)."""
        r = self.exchange.call(repeatable(self.exchange.client, "futures_change_margin_type",
                                          none_on=(NO_NEED_TO_CHANGE_MARGIN_TYPE,)),
                               symbol=self.symbol, marginType="ISOLATED")
        return r is not None

    def is_isolated(self) -> bool:
        """True when the account lists the symbol with isolated margin."""
        rows = self.exchange.call("futures_account").get("positions", [])
        return any(r.get("symbol") == self.symbol and str(r.get("isolated")).lower() == "true" for r in rows)

    def set_leverage(self, leverage: int) -> int:
        """Set the symbol's leverage (sent again on an unknown outcome: it is idempotent); returns the
        leverage the exchange reports."""
        r = self.exchange.call(repeatable(self.exchange.client, "futures_change_leverage"), symbol=self.symbol,
                               leverage=leverage)
        return int(r.get("leverage", leverage))

    def leverage_brackets(self) -> Any:
        """The symbol's maintenance tiers now, as the backtest's rows (:func:`mlrisk.backtest.futures.brackets_array`:
        notionalFloor, maintMarginRatio, cum; USDT, fraction, USDT): ``GET /fapi/v1/leverageBracket`` with
        ``symbol`` (USER_DATA; https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/
        Notional-and-Leverage-Brackets: a list of ``{symbol, notionalCoef, brackets}``, "OR (if symbol sent)" one
        such object; both are read). :class:`~mlrisk.errors.ExchangeError` when the symbol is not in the answer."""
        from mlrisk.backtest.futures import brackets_array

        r = self.exchange.call("futures_leverage_bracket", symbol=self.symbol)
        entries = r if isinstance(r, list) else [r]
        for e in entries:
            if isinstance(e, dict) and e.get("symbol") == self.symbol:
                return brackets_array(e.get("brackets") or [])
        raise ExchangeError(f"leverageBracket: no brackets for {self.symbol} in the answer: check the symbol and the "
                            "API key's futures permission")

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
        return PositionReport(amt, entry if amt != 0 else None, _price(rows[0].get("markPrice")))

    def funding_interval_ms(self) -> int:
        """The symbol's funding interval (ms) from ``GET /fapi/v1/fundingInfo``, which lists only the symbols
        whose interval Binance adjusted; one not listed settles every 8 h
        (:func:`mlrisk.data.derivatives.funding_interval_hours`, the data layer's read)."""
        return funding_interval_hours(self.exchange, self.symbol) * HOUR_MS

    def funding_fees(self, since_ms: int) -> list[Funding]:
        """The funding fees settled on the symbol from ``since_ms`` (the exchange's clock, inclusive), oldest
        first: ``GET /fapi/v1/income`` with ``incomeType`` FUNDING_FEE (https://developers.binance.com/docs/
        derivatives/usds-margined-futures/account/rest-api/Get-Income-History: ``income`` > 0 received, < 0
        paid; "Income history only contains data for the last three months"), in pages of 1000 rows ("limit
        Default 100; max 1000"), the next from the last row's time (``startTime`` "INCLUSIVE": a fee stamped
        the same millisecond as a page's last row is on the next page; duplicates dropped by ``tranId``,
        "unique in the same incomeType"), until a page is not full."""
        out: dict[int, Funding] = {}
        start = since_ms
        while True:
            rows = self.exchange.call("futures_income_history", symbol=self.symbol, incomeType=FUNDING_FEE,
                                      startTime=start, limit=INCOME_PAGE)
            new = [r for r in rows if r.get("incomeType") == FUNDING_FEE and int(r["tranId"]) not in out]
            for r in new:
                out[int(r["tranId"])] = Funding(int(r["tranId"]), str(r.get("symbol") or self.symbol), str(r["asset"]),
                                                Decimal(str(r["income"])), int(r["time"]))
            if len(rows) < INCOME_PAGE or not new:
                break
            start = max(int(r["time"]) for r in rows)
        return sorted(out.values(), key=lambda f: (f.time_ms, f.tran_id))

    def liquidations(self, since_ms: int) -> list[OrderReport]:
        """The orders the exchange sent itself on the symbol (liquidation, auto-deleverage: client ids
        :data:`FUTURES_LIQUIDATION_PREFIXES`, or type LIQUIDATION) from ``since_ms`` (the exchange's clock) for
        7 days, every page. ``GET /fapi/v1/allOrders`` (https://developers.binance.com/docs/derivatives/
        usds-margined-futures/trade/rest-api/All-Orders): ``limit`` "Default 500; max 1000"; ``orderId``:
        "If orderId is set, it will get orders >= that orderId"; "The query time period must be less then 7
        days". The first page is the window's first 1000 orders from ``startTime``; the next ones keep the
        window and start after the largest ``orderId`` read (order ids grow with time on a symbol), until a
        page is not full."""
        window = {"startTime": since_ms, "endTime": since_ms + TRADE_WINDOW_MS - 1}
        rows: list[dict[str, Any]] = []
        kw: dict[str, Any] = window
        while True:
            page = self.exchange.call("futures_get_all_orders", symbol=self.symbol, limit=PAGE, **kw)
            rows += page
            if len(page) < PAGE:
                break
            kw = {**window, "orderId": max(int(r["orderId"]) for r in page) + 1}
        return [self._report(r) for r in rows
                if str(r.get("clientOrderId", "")).startswith(FUTURES_LIQUIDATION_PREFIXES) or r.get("type") == "LIQUIDATION"]

    # ------------------------------------------------------------------------ market data
    def funding_history(self, start_ms: int, end_ms: int) -> Any:
        """The symbol's funding settlements with ``start_ms <= fundingTime < end_ms`` (epoch ms, as Binance
        stamps them, jitter kept) as the funding table of :mod:`mlrisk.data.derivatives` (``funding_time``,
        ``funding_time_raw``, ``funding_rate``, ``interval_hours``, ``mark_price``): public ``GET
        /fapi/v1/fundingRate`` (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/
        rest-api/Get-Funding-Rate-History: ``limit`` "Default 100; max 1000"; more rows than ``limit`` between
        ``startTime`` and ``endTime``: "return as startTime + limit"), paged from ``startTime`` by the fetch
        stage's own reader (:func:`mlrisk.data.derivatives.fetch_funding`, 1000 a page). ``interval_hours``:
        ``/fapi/v1/fundingInfo``'s, read once."""
        from mlrisk.data import derivatives as dv

        if getattr(self, "_funding_hours", None) is None:
            self._funding_hours = dv.funding_interval_hours(self.exchange, self.symbol)
        return dv.fetch_funding(self.exchange, self.symbol, start_ms, end_ms, self._funding_hours)

    def mark_klines(self, interval: str, start_ms: int, end_ms: int) -> Any:
        """The symbol's closed mark-price candles with ``start_ms <= open time < end_ms`` (epoch ms; ``end_ms``
        no later than the last close wanted: a candle is returned only if it closed before ``end_ms``) in the
        mark schema of :mod:`mlrisk.data.derivatives` (``open_time``, ``open``, ``high``, ``low``, ``close``,
        ``close_time``): public ``GET /fapi/v1/markPriceKlines`` (https://developers.binance.com/docs/derivatives/
        usds-margined-futures/market-data/rest-api/Mark-Price-Kline-Candlestick-Data: the kline layout, ``limit``
        "Default 500; max 1500"), paged by the fetch stage's reader (:class:`mlrisk.data.sources.BinanceMarkKlines`,
        1000 a page, within the documented maximum)."""
        from mlrisk.data.sources import BinanceMarkKlines
        from mlrisk.times import INTERVAL_MS

        reader = BinanceMarkKlines(self.exchange, now_ms=lambda: end_ms, progress=False)
        return reader.fetch(self.symbol, interval, INTERVAL_MS[interval], start_ms, end_ms)

    def open_interest(self, start_ms: int, end_ms: int) -> Any:
        """The open interest rows with ``start_ms <= timestamp < end_ms`` in the metrics schema of
        :mod:`mlrisk.data.derivatives` (``create_time``, ``sum_open_interest`` in base asset,
        ``sum_open_interest_value`` in USDT; the long/short ratios NaN): ``GET /futures/data/openInterestHist``
        with period 5m, the dumps' step (https://developers.binance.com/docs/derivatives/usds-margined-futures/
        market-data/rest-api/Open-Interest-Statistics: ``limit`` default 30, max 500; "Only the data of the
        latest 30 days is available"; ``timestamp`` ms, the sums as strings), paged from ``startTime``."""
        import pandas as pd

        from mlrisk.data import derivatives as dv

        rows: dict[int, dict[str, Any]] = {}
        cursor = start_ms
        while cursor < end_ms:
            page = self.exchange.call("futures_open_interest_hist", symbol=self.symbol, period="5m",
                                      startTime=cursor, endTime=end_ms - 1, limit=OI_PAGE)
            for r in page:
                rows[int(r["timestamp"])] = r
            if len(page) < OI_PAGE:
                break
            nxt = max(int(r["timestamp"]) for r in page) + 1
            if nxt <= cursor:
                break
            cursor = nxt
        t = sorted(k for k in rows if start_ms <= k < end_ms)
        out = pd.DataFrame({"create_time": pd.to_datetime(t, unit="ms", utc=True).astype("datetime64[ms, UTC]")})
        for col, key in (("sum_open_interest", "sumOpenInterest"), ("sum_open_interest_value", "sumOpenInterestValue")):
            out[col] = [float(rows[k][key]) for k in t]
        for col in dv.METRIC_VALUES[2:]:
            out[col] = float("nan")
        return out[dv.METRICS_COLUMNS]

    # ----------------------------------------------------------------------------- orders
    def place(self, o: OrderRecord) -> OrderReport:
        """Send an order once: an algo order (take-profit/stop) closes the whole position at its
        trigger (``closePosition``, contract price); MARKET/LIMIT (GTC) with ``reduceOnly`` when set.
        Raises :class:`OrderRefused` for the refusals of :data:`FUTURES_REFUSALS`."""
        create = _refusing(self.exchange.client, "futures_create_order")
        if o.type in ALGO_TYPES:
            r = self.exchange.call(create, idempotent=False, symbol=o.symbol, side=o.side, type=o.type,
                                   triggerPrice=fmt(o.price or ZERO), closePosition="true", workingType="CONTRACT_PRICE",
                                   clientAlgoId=o.client_order_id)
            return self._report(r, algo=True)
        kw: dict[str, Any] = dict(symbol=o.symbol, side=o.side, type=o.type, quantity=fmt(o.quantity),
                                  newClientOrderId=o.client_order_id, newOrderRespType="RESULT")
        if o.type == "LIMIT":
            kw.update(price=fmt(o.price or ZERO), timeInForce="GTC")
        if o.reduce_only:
            kw["reduceOnly"] = "true"
        return self._report(self.exchange.call(create, idempotent=False, **kw))

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

    def trades(self, order_id: int, since_ms: int | None = None, until_ms: int | None = None) -> list[FillReport]:
        """The trades of one order (``userTrades``). Without ``since_ms`` Binance answers the last 7 days
        only; with it, every trade between ``since_ms`` and ``until_ms`` (default: now + 1 min), read in
        windows of at most 7 days ("The time between startTime and endTime cannot be longer than 7
        days") and pages of 1000 rows (the next page starts at the last row's time; duplicates dropped)."""
        if since_ms is None:
            return [_fill(t, int(t["time"])) for t in self.exchange.call("futures_account_trades", symbol=self.symbol,
                                                                           orderId=order_id)]
        from mlrisk.live.state import now_ms

        end = now_ms() + 60_000 if until_ms is None else until_ms
        out: dict[int, FillReport] = {}
        start = since_ms
        while start <= end:
            w_end = min(start + TRADE_WINDOW_MS, end)
            page_start = start
            while True:
                rows = self.exchange.call("futures_account_trades", symbol=self.symbol, orderId=order_id,
                                          startTime=page_start, endTime=w_end, limit=TRADE_PAGE)
                new = [t for t in rows if int(t["id"]) not in out]
                for t in new:
                    out[int(t["id"])] = _fill(t, int(t["time"]))
                if len(rows) < TRADE_PAGE or not new:
                    break
                page_start = max(int(t["time"]) for t in rows)
            start = w_end + 1
        return sorted(out.values(), key=lambda f: (f.time_ms, f.trade_id))

    def checks(self) -> list[VenueCheck]:
        """Read-only calls that confirm what the futures bot assumes (see docs/live.md "Checks to do on first use")."""
        c = self.exchange.client

        def account() -> tuple[bool, str]:
            b = self.balances()
            return "USDT" in b, f"futures account readable; USDT available {fmt(b.get('USDT', (ZERO, ZERO))[0])}"

        def mode() -> tuple[bool, str]:
            hedge = self.hedge_mode()
            return not hedge, "one-way position mode" if not hedge else "hedge mode (dualSidePosition): the bot needs one-way"

        def algos() -> tuple[bool, str]:
            rows = self.exchange.call("futures_get_open_orders", symbol=self.symbol, conditional=True)
            return isinstance(rows, list), f"openAlgoOrders readable (Algo Order API): {len(rows)} open"

        def trades() -> tuple[bool, str]:
            now = self.exchange.server_time_ms()
            rows = self.exchange.call("futures_account_trades", symbol=self.symbol, startTime=now - TRADE_WINDOW_MS,
                                      endTime=now, limit=TRADE_PAGE)
            return isinstance(rows, list), f"userTrades with a 7-day startTime-endTime window accepted ({len(rows)} rows)"

        def opens() -> tuple[bool, str]:
            rows = self.exchange.call("futures_get_open_orders", symbol=self.symbol)
            return isinstance(rows, list), f"openOrders readable: {len(rows)} open"

        def order_trades() -> tuple[bool, str]:
            now = self.exchange.server_time_ms()
            rows = self.exchange.call("futures_account_trades", symbol=self.symbol, orderId=1,
                                      startTime=now - TRADE_WINDOW_MS, endTime=now, limit=TRADE_PAGE)
            return isinstance(rows, list), "userTrades with orderId and a 7-day window accepted (how an order's fills are read)"

        def position() -> tuple[bool, str]:
            p = self.position()
            return True, f"positionRisk readable: {fmt(p.quantity)} {self.symbol}"

        return self._common_checks() + [
            _check("account", account), _check("position-mode", mode),
            _check("open-orders", opens),
            _check("open-algo-orders", algos),
            _check("order-not-found", lambda: _code_check(c, "futures_get_order", ORDER_NOT_FOUND, symbol=self.symbol,
                                                          origClientOrderId=CHECK_CLIENT_ID)),
            # the bot queries algo orders by clientAlgoId with symbol (not a documented parameter): not -1104
            _check("algo-not-found", lambda: _code_check(c, "futures_get_order", ORDER_NOT_FOUND, symbol=self.symbol,
                                                         clientAlgoId=CHECK_CLIENT_ID)),
            _check("trade-window", trades), _check("order-trades-window", order_trades), _check("position", position)]

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
        actual = None if oid is None else self.exchange.call(
            or_none(self.exchange.client, "futures_get_order", (ORDER_NOT_FOUND,)), symbol=self.symbol, orderId=oid)
        if actual is not None:
            executed, quote = Decimal(actual["executedQty"]), Decimal(actual["cumQuote"])
            status = BINANCE_STATUS[actual["status"]]  # the triggered order's fate is the algo order's
            status = S.CANCELLED if status is S.REJECTED else status
        elif oid is not None:   # named but not readable yet (Query Order trails the matching engine): still open
            status = S.OPEN
        elif raw == "FINISHED":
            status = S.CANCELLED
        return OrderReport(cid, oid if oid is not None else int(r["algoId"]), status, raw, executed, quote, at, side, typ,
                           ZERO, trigger, True, oid)


__all__ = ["ALGO_REJECTED_AT_TRIGGER", "ALGO_STATUS", "ALGO_TYPES", "BINANCE_STATUS", "FORGOTTEN_AFTER_MS", "FUNDING_FEE",
           "FUTURES_REFUSALS",
           "FillReport", "FuturesVenue", "OrderRefused", "OrderReport", "VenueCheck", "futures_refusal", "is_unknown_outcome",
           "PositionReport", "repeatable", "sent_once", "SpotVenue",
           "or_none"]


# ==================================================================== user data stream: normalised updates
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
    fill: FillReport | None
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
            fill = FillReport(int(ev["t"]), _d(ev.get("L")), _d(ev.get("l")), _d(ev.get("n")), str(ev.get("N") or ""),
                              int(ev.get("T") or at), ev.get("S") == "BUY", int(ev["i"]))
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
            fill = FillReport(int(o.get("t") or 0), _d(o.get("L")), _d(o.get("l")), _d(o.get("n")), str(o.get("N") or ""),
                              int(o.get("T") or at), o.get("S") == "BUY", int(o.get("i") or 0) or None)
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
