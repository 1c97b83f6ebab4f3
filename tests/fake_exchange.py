"""A Binance-compatible *exchange* on 127.0.0.1 for the live-trading tests: FakeBinance's public
endpoints plus Binance spot's signed order and account endpoints (see :class:`FakeExchange`), and
real-looking BTCUSDT ``exchangeInfo`` entries. Driven through the real python-binance client in
``tests/test_fake_exchange.py``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qsl, urlparse

from fake_binance import FakeBinance, Request

#: A BTCUSDT spot ``exchangeInfo`` symbol entry with real-looking filters (Binance's BTCUSDT values as of 2024).
BTCUSDT_SPOT: dict[str, Any] = {
    "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
    "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
    "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"],
    "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "opoAllowed": True, "quoteOrderQtyMarketAllowed": True,
    "allowTrailingStop": True, "cancelReplaceAllowed": True, "amendAllowed": True, "pegInstructionsAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "76.79277158", "stepSize": "0.00000000"},
        {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
         "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
        {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
         "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
    "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
    "defaultSelfTradePreventionMode": "EXPIRE_MAKER", "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
}

#: A BTCUSDT USDT-M futures ``/fapi/v1/exchangeInfo`` entry's filters (futures name the minimum ``notional``).
BTCUSDT_FUTURES: dict[str, Any] = {
    "symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING",
    "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "maintMarginPercent": "2.5000",
    "requiredMarginPercent": "5.0000", "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
    "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
    "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012500",
    "marketTakeBound": "0.05",
    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"},
    ],
}


def symbol_entry(base: dict[str, Any] = BTCUSDT_SPOT, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with top-level fields replaced (e.g. ``symbol="ETHUSDT"``)."""
    out = copy.deepcopy(base)
    out.update(changes)
    return out


CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")   # spot's legal range for newClientOrderId
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
#: errors.md: the two codes whose execution status is unknown (the order may or may not have executed).
UNKNOWN_MSGS = {-1006: "An unexpected response was received from the message bus. Execution status unknown.",
                -1007: "Timeout waiting for response from backend server. Send status unknown; execution status unknown."}
E8 = Decimal("0.00000001")


class _Reply(Exception):
    """Abort a request with a Binance error body."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.body, self.headers = status, {"code": code, "msg": msg}, headers or {}


def _s(d: Decimal) -> str:
    """Binance's 8-decimal string."""
    return f"{d.quantize(E8):f}"


@dataclass
class Fault:
    """One scheduled fault. ``kind``: ``error`` (``status``/``code``/``msg``, default a 500 -1001),
    ``429``/``418`` (with ``Retry-After: retry_after``), ``timeout`` (wait ``delay_s``, then close the
    connection with no response), ``slow`` (wait ``delay_s``, then answer normally), ``lost`` (process
    the request, then close the connection: an order accepted whose response is lost), ``kill``
    (SIGKILL the process ``FakeExchange.kill_pid``, wait until it is dead, then close the connection:
    the client dies with its request sent). ``execute``: for ``error``, ``timeout`` and ``kill``,
    process the request first (the outcome was a success the client never hears about). It fires on the first request matching ``method``/``path`` (None = any) after
    ``skip`` matching requests went through.

    ``unknown``: Binance's "execution status unknown" answer, HTTP ``status`` (default 408; Binance
    also sends it as 400) with ``code`` -1007 (the default) or -1006 and their documented messages,
    after executing the request (``execute=True``) or without executing it. Source:
    binance-spot-api-docs errors.md "-1006 UNEXPECTED_RESP", "-1007 TIMEOUT"; futures:
    https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code (same codes)."""

    kind: str
    method: str | None = None
    path: str | None = None
    skip: int = 0
    delay_s: float = 2.0
    retry_after: int = 1
    status: int = 500
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    execute: bool = False
    fired: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.kind == "unknown":   # the defaults become the documented -1007 answer
            self.code = -1007 if self.code == -1001 else self.code
            self.status = 408 if self.status == 500 else self.status
            if self.msg == Fault.msg:
                if self.code not in UNKNOWN_MSGS:
                    raise ValueError(f"an unknown-outcome fault needs code -1006 or -1007, not {self.code}")
                self.msg = UNKNOWN_MSGS[self.code]


class FakeExchange(FakeBinance):
    """A Binance spot exchange on 127.0.0.1 for tests: ``with FakeExchange() as fx:``, then
    ``Client(fx.api_key, fx.api_secret, ping=False)`` with ``client.API_URL = f"{fx.url}/api"``.

    Serves FakeBinance's public endpoints (ping, klines) and: ``GET /api/v3/time`` (this server's
    clock: wall clock + ``clock_skew_ms``), ``GET /api/v3/exchangeInfo`` (``symbols`` entries with
    filters), and the signed ``POST/GET/DELETE /api/v3/order``, ``GET /api/v3/openOrders``,
    ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades``, ``GET /api/v3/account``. Signed requests are checked like Binance: ``X-MBX-APIKEY`` (-2014/-2015),
    HMAC-SHA256 over the query string followed by the body without ``signature`` (-1022), ``timestamp``
    within ``recvWindow`` (default 5000 ms, at most 60000) and not 1000 ms ahead (-1021). New orders are
    checked against the symbol's PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE and (MIN_)NOTIONAL filters
    (-1013 "Filter failure: ..."), the balance (-2010) and open orders' client ids (-2010 "Duplicate
    order sent."; a filled or cancelled order's id may be reused, as on Binance). MARKET orders fill
    at ``prices[symbol]`` in full, paying ``taker_fee`` (a BUY in the base asset, a SELL in the quote
    asset); LIMIT orders that cross fill the same way, others rest (funds locked) until
    :meth:`set_price` crosses them (filled at their limit price, ``maker_fee``). No partial fills
    unless ``market_fill_fraction`` is set. Faults: :meth:`schedule`.

    Documented behaviours, each a switch that is off by default and cites its source where it is
    implemented: an unknown-outcome answer (fault kind ``unknown``: -1007/-1006, executed or not);
    reads that lag writes (``query_lag_ms``: GET order -2013 and allOrders omit a new order;
    ``trade_lag_ms``: myTrades omits a new trade; futures ``position_lag_ms``), all in ms of
    :meth:`server_ms` (so moving ``clock_skew_ms`` moves them); ``market_fill_fraction`` (a MARKET
    order fills that part, then EXPIRED with ``expiry_reason``); ``archive_after_days`` (-2026
    ORDER_ARCHIVED). A final (filled, cancelled, expired) order frees its client id (rest-api.md "New
    order": "Orders with the same newClientOrderID can be accepted only when the previous one is filled,
    otherwise the order will be rejected."). :meth:`enable_documented` turns them on at random;
    ``fired`` / :meth:`documented_report` count what changed an answer. Every signed request is logged in ``signed`` as (method, path, params,
    HTTP status) with ``params`` minus the signature. Not served: futures (``/fapi``) signed
    endpoints, order lists, rate-limit accounting, and timestamps in microseconds.
    """

    def __init__(self, *, api_key: str = "fake-api-key", api_secret: str = "fake-api-secret",
                 symbols: tuple[dict[str, Any], ...] = (BTCUSDT_SPOT,), prices: dict[str, Any] | None = None,
                 balances: dict[str, Any] | None = None, taker_fee: str = "0.001", maker_fee: str = "0.001",
                 clock_skew_ms: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        # stop within 50 ms rather than serve_forever's default 0.5 s poll (test teardown time)
        self._thread = threading.Thread(target=lambda: self._server.serve_forever(poll_interval=0.05), daemon=True)
        self.api_key, self.api_secret = api_key, api_secret
        self.symbols = {s["symbol"]: copy.deepcopy(s) for s in symbols}
        self.prices = {k: Decimal(str(v)) for k, v in (prices or {"BTCUSDT": "40000"}).items()}
        self.balances: dict[str, list[Decimal]] = {a: [Decimal(str(v)), Decimal(0)]
                                                   for a, v in (balances or {"USDT": "10000", "BTC": "0"}).items()}
        self.taker_fee, self.maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        self.clock_skew_ms = clock_skew_ms
        self.kill_pid: int | None = None            # the process a ``kill`` fault kills
        # Documented behaviours, every one off by default (see the class docstring); lags are in ms of
        # ``server_ms()`` (wall clock + ``clock_skew_ms``), so a test that moves ``clock_skew_ms`` moves them too.
        self.query_lag_ms = 0            # a new order is invisible to GET order (-2013) and allOrders this long
        self.trade_lag_ms = 0            # a trade is missing from myTrades / userTrades this long
        self.position_lag_ms = 0         # (futures) positionRisk and account positions show the position this long ago
        self.market_fill_fraction: Decimal | None = None   # (spot) MARKET orders fill this part, then EXPIRED
        self.expiry_reason = "INSUFFICIENT_LIQUIDITY"      # their ``expiryReason`` (enums.md "Expiry Reasons")
        self.archive_after_days: float | None = None       # (spot) final orders with no fill older than this: -2026
        self.lookup_window = False       # (spot) allOrders/myTrades refuse startTime-endTime over 24 h (-1127)
        self.fired: Counter[str] = Counter()               # documented behaviours that changed an answer, by name
        base_error = self._server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:  # a killed client resets its connection
            if not isinstance(sys.exc_info()[1], ConnectionResetError):
                base_error(request, client_address)

        self._server.handle_error = handle_error
        self.orders: list[dict[str, Any]] = []      # every accepted order, oldest first (internal form)
        self.trades: list[dict[str, Any]] = []      # every trade, as GET /api/v3/myTrades shows it
        self.signed: list[tuple[str, str, dict[str, str], int]] = []
        self.scheduled: list[Fault] = []
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._xlock = threading.RLock()

    # ------------------------------------------------------------------ test controls
    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        super().__exit__(*exc)

    def server_ms(self) -> int:
        """This server's clock, epoch ms: the wall clock plus ``clock_skew_ms``."""
        return time.time_ns() // 1_000_000 + self.clock_skew_ms

    def schedule(self, kind: str, **opts: Any) -> Fault:
        """Add a fault (see :class:`Fault`); returns it (``fault.fired`` says whether it happened)."""
        f = Fault(kind, **opts)
        with self._xlock:
            self.scheduled.append(f)
        return f

    def set_price(self, symbol: str, price: Any) -> list[dict[str, Any]]:
        """Move the market: resting LIMIT orders the new price crosses fill at their limit price.
        Returns the orders filled."""
        with self._xlock:
            p = self.prices[symbol] = Decimal(str(price))
            done = []
            for o in self.orders:
                if o["symbol"] == symbol and o["status"] in OPEN_STATUSES and (
                        (o["side"] == "BUY" and p <= o["price"]) or (o["side"] == "SELL" and p >= o["price"])):
                    self._fill(o, o["price"], self.maker_fee, from_locked=True)
                    done.append(o)
            return done

    def _documented_switches(self, rng: random.Random, lag_ms: int) -> dict[str, Callable[[], Any]]:
        """name -> a function that turns that documented behaviour on and returns its setting."""
        def set_(attr: str, value: Any) -> Callable[[], Any]:
            return lambda: (setattr(self, attr, value), value)[1]

        def unknown() -> dict[str, Any]:
            opts = {"method": "POST", "path": self.ORDER_PATH, "skip": rng.randrange(4), "code": rng.choice([-1006, -1007]),
                    "status": rng.choice([400, 408]), "execute": rng.random() < 0.5}
            self.schedule("unknown", **opts)
            return opts

        return {"unknown": unknown, "query_lag": set_("query_lag_ms", lag_ms), "trade_lag": set_("trade_lag_ms", lag_ms),
                "partial_expired": set_("market_fill_fraction", Decimal(rng.choice(["0", "0.3", "0.5", "0.9"]))),
                "archived": set_("archive_after_days", 1.0), "lookup_window": set_("lookup_window", True)}

    ORDER_PATH = "/api/v3/order"

    def enable_documented(self, seed: int, rate: float = 0.5, lag_ms: int = 300) -> dict[str, Any]:
        """Turn on each documented behaviour (unknown-outcome fault on an order placement, read lags, partial
        fills, archiving...; see the switches in ``__init__``) with probability ``rate``, drawn from ``seed``;
        lags last ``lag_ms`` of ``server_ms()`` (a test that moves ``clock_skew_ms`` by an hour per candle can pass
        lag_ms up to an hour). Returns {name: setting} of those turned on; :meth:`documented_report` then says
        which fired and how often."""
        rng = random.Random(seed)
        with self._xlock:
            return {name: on() for name, on in self._documented_switches(rng, lag_ms).items() if rng.random() < rate}

    def documented_report(self) -> dict[str, int]:
        """How often each documented behaviour changed an answer, by name (reads hidden count once per read)."""
        with self._xlock:
            return dict(self.fired)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of an asset."""
        with self._xlock:
            free, locked = self.balances.get(asset, [Decimal(0), Decimal(0)])
            return free, locked

    def orders_with_client_id(self, cid: str) -> list[dict[str, Any]]:
        with self._xlock:
            return [o for o in self.orders if o["clientOrderId"] == cid]

    # ------------------------------------------------------------------ HTTP plumbing
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:  # noqa: N802
                if not fake._serve(self, "GET"):
                    base.do_GET(self)

            def do_POST(self) -> None:  # noqa: N802
                if not fake._serve(self, "POST"):
                    self._send(404, {"code": -1000, "msg": f"unknown path {self.path}"})

            def do_DELETE(self) -> None:  # noqa: N802
                if not fake._serve(self, "DELETE"):
                    self._send(404, {"code": -1000, "msg": f"unknown path {self.path}"})

        return Handler

    ROUTES = {("GET", "/api/v3/time"): ("_time", False), ("GET", "/api/v3/exchangeInfo"): ("_exchange_info", False),
              ("POST", "/api/v3/order"): ("_new_order", True), ("GET", "/api/v3/order"): ("_query_order", True),
              ("DELETE", "/api/v3/order"): ("_cancel_order", True), ("GET", "/api/v3/openOrders"): ("_open_orders", True),
              ("GET", "/api/v3/account"): ("_account", True), ("GET", "/api/v3/allOrders"): ("_all_orders", True),
              ("GET", "/api/v3/myTrades"): ("_my_trades", True)}

    def _take_order_fault(self, method: str, path: str) -> Fault | None:
        with self._xlock:
            for f in self.scheduled:
                if not f.fired and (f.method in (None, method)) and (f.path in (None, path)):
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.fired = True
                    self.scheduled.remove(f)
                    return f
        return None

    def _kill_client(self) -> None:
        """SIGKILL ``kill_pid`` and wait (at most 5 s) until it is dead (a zombie or gone)."""
        if self.kill_pid is None:
            raise ValueError("a kill fault needs FakeExchange.kill_pid")
        try:
            os.kill(self.kill_pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.kill_pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if state in ("Z", "X"):
                return
            time.sleep(0.005)

    @staticmethod
    def _drop(h: Any) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        h.connection.close()

    def _serve(self, h: Any, method: str) -> bool:
        u = urlparse(h.path)
        route = self.ROUTES.get((method, u.path))
        if route is None:
            return False
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n).decode() if n else ""
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(u.query, keep_blank_values=True))   # the query string wins, like Binance
        with self.lock:
            self.requests.append(Request(method, u.path, {k: v for k, v in params.items() if k != "signature"},
                                         dict(h.headers.items())))
        fault = self._take_order_fault(method, u.path)
        name, signed = route
        run = lambda: self._answer(h, method, u.path, name, signed, u.query, body, params)  # noqa: E731
        if fault is None:
            status, payload, headers = run()
        elif fault.kind == "slow":
            self._stopping.wait(fault.delay_s)
            status, payload, headers = run()
        elif fault.kind in ("timeout", "lost"):
            if fault.kind == "lost" or fault.execute:
                run()
            if fault.kind == "timeout":
                self._stopping.wait(fault.delay_s)
            self._drop(h)
            return True
        elif fault.kind == "kill":
            if fault.execute:
                run()
            self._kill_client()
            self._drop(h)
            return True
        elif fault.kind in ("429", "418"):
            status, payload = int(fault.kind), {"code": -1003, "msg": "Too much request weight used; current limit is "
                                                "6000 request weight per 1 MINUTE."}
            headers = {"Retry-After": str(fault.retry_after)}
        elif fault.kind in ("error", "unknown"):
            if fault.kind == "unknown":
                self.fired["unknown_executed" if fault.execute else "unknown_not_executed"] += 1
            if fault.execute:
                run()
            status, payload, headers = fault.status, {"code": fault.code, "msg": fault.msg}, {}
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        try:
            h._send(status, payload, headers)
        except OSError:
            pass
        return True

    def _answer(self, h: Any, method: str, path: str, name: str, signed: bool, query: str, body: str,
                params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        try:
            if signed:
                self._authenticate(h, query, body, params)
            with self._xlock:
                out = getattr(self, name)({k: v for k, v in params.items() if k != "signature"})
            status, payload, headers = 200, out, {}
        except _Reply as r:
            status, payload, headers = r.status, r.body, r.headers
        if signed:
            with self._xlock:
                self.signed.append((method, path, {k: v for k, v in params.items() if k != "signature"}, status))
        return status, payload, headers

    def _authenticate(self, h: Any, query: str, body: str, params: dict[str, str]) -> None:
        key = h.headers.get("X-MBX-APIKEY")
        if not key:
            raise _Reply(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise _Reply(401, -2015, "Invalid API-key, IP, or permissions for action.")
        strip = lambda s: "&".join(p for p in s.split("&") if p and not p.startswith("signature="))  # noqa: E731
        payload = strip(query) + strip(body)
        want = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, params.get("signature", "").lower()):
            raise _Reply(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError):
            raise _Reply(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        try:
            window = float(params.get("recvWindow", 5000))
        except ValueError:
            raise _Reply(400, -1102, "Mandatory parameter 'recvWindow' was not sent, was empty/null, or malformed.") from None
        if window > 60000:
            raise _Reply(400, -1131, "recvWindow must be less than 60000")
        now = self.server_ms()
        if ts >= now + 1000:
            raise _Reply(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise _Reply(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # ------------------------------------------------------------------ endpoints
    def _time(self, q: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": self.server_ms()}

    def _exchange_info(self, q: dict[str, str]) -> dict[str, Any]:
        syms = list(self.symbols.values())
        if "symbol" in q:
            if q["symbol"] not in self.symbols:
                raise _Reply(400, -1121, "Invalid symbol.")
            syms = [self.symbols[q["symbol"]]]
        return {"timezone": "UTC", "serverTime": self.server_ms(),
                "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                               {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                               {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000}],
                "exchangeFilters": [], "symbols": copy.deepcopy(syms)}

    def _symbol(self, q: dict[str, str]) -> dict[str, Any]:
        if not q.get("symbol"):
            raise _Reply(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if q["symbol"] not in self.symbols:
            raise _Reply(400, -1121, "Invalid symbol.")
        return self.symbols[q["symbol"]]

    @staticmethod
    def _decimal(q: dict[str, str], name: str) -> Decimal | None:
        if name not in q or q[name] == "":
            return None
        try:
            d = Decimal(q[name])
        except ArithmeticError:
            raise _Reply(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
        if not d.is_finite():
            raise _Reply(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return d

    @staticmethod
    def _check_filters(info: dict[str, Any], otype: str, qty: Decimal, price: Decimal | None, market_price: Decimal) -> None:
        f = {x["filterType"]: x for x in info["filters"]}
        if price is not None and "PRICE_FILTER" in f:
            pf = f["PRICE_FILTER"]
            lo, hi, tick = Decimal(pf["minPrice"]), Decimal(pf["maxPrice"]), Decimal(pf["tickSize"])
            if (lo and price < lo) or (hi and price > hi) or (tick and price % tick != 0):
                raise _Reply(400, -1013, "Filter failure: PRICE_FILTER")
        lots = ["LOT_SIZE"] + (["MARKET_LOT_SIZE"] if otype == "MARKET" else [])
        for name in lots:
            if name in f:
                lo, hi, step = Decimal(f[name]["minQty"]), Decimal(f[name]["maxQty"]), Decimal(f[name]["stepSize"])
                if qty <= 0 or (lo and qty < lo) or (hi and qty > hi) or (step and qty % step != 0):
                    raise _Reply(400, -1013, f"Filter failure: {name}")
        at = price if price is not None else market_price
        if "NOTIONAL" in f:
            n = f["NOTIONAL"]
            if (otype != "MARKET" or n.get("applyMinToMarket", True)) and qty * at < Decimal(n["minNotional"]):
                raise _Reply(400, -1013, "Filter failure: NOTIONAL")
            if (otype != "MARKET" or n.get("applyMaxToMarket", False)) and Decimal(n.get("maxNotional", 0)) and \
                    qty * at > Decimal(n["maxNotional"]):
                raise _Reply(400, -1013, "Filter failure: NOTIONAL")
        elif "MIN_NOTIONAL" in f:
            n = f["MIN_NOTIONAL"]
            if (otype != "MARKET" or n.get("applyToMarket", True)) and qty * at < Decimal(n.get("minNotional", n.get("notional", 0))):
                raise _Reply(400, -1013, "Filter failure: MIN_NOTIONAL")

    def _free(self, asset: str) -> Decimal:
        return self.balances.setdefault(asset, [Decimal(0), Decimal(0)])[0]

    def _new_order(self, q: dict[str, str]) -> dict[str, Any]:
        info = self._symbol(q)
        side, otype = q.get("side", ""), q.get("type", "")
        if side not in ("BUY", "SELL"):
            raise _Reply(400, -1117, "Invalid side.")
        if otype not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            raise _Reply(400, -1116, "Invalid orderType.")
        cid = q.get("newClientOrderId") or f"fake{next(self._ids)}{int(time.time() * 1000)}"
        if not CLIENT_ID_RE.match(cid):
            raise _Reply(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                     "'^[a-zA-Z0-9-_]{1,36}$'.")
        qty, price, quote_qty = self._decimal(q, "quantity"), self._decimal(q, "price"), self._decimal(q, "quoteOrderQty")
        mkt = self.prices[info["symbol"]]
        if otype == "LIMIT" and not q.get("timeInForce"):
            raise _Reply(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.")
        if otype in ("LIMIT", "LIMIT_MAKER") and (qty is None or price is None):
            raise _Reply(400, -1102, f"Mandatory parameter '{'quantity' if qty is None else 'price'}' was not sent, "
                                     "was empty/null, or malformed.")
        if otype == "MARKET":
            if price is not None:
                raise _Reply(400, -1106, "Parameter 'price' sent when not required.")
            if qty is None and quote_qty is None:
                raise _Reply(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if qty is None:
                assert quote_qty is not None
                step = Decimal(next(x for x in info["filters"] if x["filterType"] == "LOT_SIZE")["stepSize"])
                qty = (quote_qty / mkt // step) * step if step else quote_qty / mkt
        assert qty is not None
        self._check_filters(info, otype, qty, price, mkt)
        if any(o["clientOrderId"] == cid and o["status"] in OPEN_STATUSES for o in self.orders):
            raise _Reply(400, -2010, "Duplicate order sent.")
        base, quote = info["baseAsset"], info["quoteAsset"]
        crosses = otype == "MARKET" or (side == "BUY" and price >= mkt) or (side == "SELL" and price <= mkt)  # type: ignore[operator]
        if otype == "LIMIT_MAKER" and crosses:
            raise _Reply(400, -2010, "Order would immediately match and take.")
        need_asset, need = (quote, qty * (mkt if crosses else price)) if side == "BUY" else (base, qty)  # type: ignore[operator]
        if self._free(need_asset) < need:
            raise _Reply(400, -2010, "Account has insufficient balance for requested action.")
        now = self.server_ms()
        o: dict[str, Any] = {
            "symbol": info["symbol"], "orderId": next(self._ids), "orderListId": -1, "clientOrderId": cid,
            "price": price if price is not None else Decimal(0), "origQty": qty, "executedQty": Decimal(0),
            "cummulativeQuoteQty": Decimal(0), "status": "NEW", "timeInForce": q.get("timeInForce", "GTC"),
            "type": otype, "side": side, "time": now, "updateTime": now, "workingTime": now,
            "origQuoteOrderQty": quote_qty or Decimal(0), "fills": [], "base": base, "quote": quote,
        }
        self.orders.append(o)
        if otype == "MARKET" and self.market_fill_fraction is not None:
            self._expire_market(o, info, mkt)
        elif crosses:
            self._fill(o, mkt, self.taker_fee, from_locked=False)
        else:
            self.balances[need_asset][0] -= need
            self.balances[need_asset][1] += need
        resp_type = q.get("newOrderRespType", "FULL" if otype in ("MARKET", "LIMIT") else "ACK")
        if resp_type == "ACK":
            return {"symbol": o["symbol"], "orderId": o["orderId"], "orderListId": -1, "clientOrderId": cid, "transactTime": now}
        out = {k: v for k, v in self._spot_view(o).items() if k not in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty")}
        out["transactTime"] = now
        if resp_type == "FULL":
            out["fills"] = [dict(f) for f in o["fills"]]
        return out

    def _fill(self, o: dict[str, Any], price: Decimal, fee: Decimal, from_locked: bool, qty: Decimal | None = None) -> None:
        qty = o["origQty"] - o["executedQty"] if qty is None else qty
        base, quote = self.balances.setdefault(o["base"], [Decimal(0)] * 2), self.balances.setdefault(o["quote"], [Decimal(0)] * 2)
        cost = qty * price
        if o["side"] == "BUY":
            commission, asset = (qty * fee).quantize(E8), o["base"]
            if from_locked:
                quote[1] -= qty * o["price"]
            else:
                quote[0] -= cost
            base[0] += qty - commission
        else:
            commission, asset = (cost * fee).quantize(E8), o["quote"]
            if from_locked:
                base[1] -= qty
            else:
                base[0] -= qty
            quote[0] += cost - commission
        trade_id, now = next(self._trade_ids), self.server_ms()
        o["fills"].append({"price": _s(price), "qty": _s(qty), "commission": _s(commission), "commissionAsset": asset,
                           "tradeId": trade_id})
        self.trades.append({"symbol": o["symbol"], "id": trade_id, "orderId": o["orderId"], "orderListId": -1,
                            "price": _s(price), "qty": _s(qty), "quoteQty": _s(cost), "commission": _s(commission),
                            "commissionAsset": asset, "time": now, "isBuyer": o["side"] == "BUY",
                            "isMaker": from_locked, "isBestMatch": True})
        o["executedQty"] += qty
        o["cummulativeQuoteQty"] += cost
        o["status"], o["updateTime"] = "FILLED", self.server_ms()

    @staticmethod
    def _view(o: dict[str, Any]) -> dict[str, Any]:
        """The order as ``GET /api/v3/order`` shows it."""
        return {"symbol": o["symbol"], "orderId": o["orderId"], "orderListId": -1, "clientOrderId": o["clientOrderId"],
                "price": _s(o["price"]), "origQty": _s(o["origQty"]), "executedQty": _s(o["executedQty"]),
                "cummulativeQuoteQty": _s(o["cummulativeQuoteQty"]), "status": o["status"], "timeInForce": o["timeInForce"],
                "type": o["type"], "side": o["side"], "stopPrice": "0.00000000", "icebergQty": "0.00000000",
                "time": o["time"], "updateTime": o["updateTime"], "isWorking": o["status"] in OPEN_STATUSES,
                "workingTime": o["workingTime"], "origQuoteOrderQty": _s(o["origQuoteOrderQty"]),
                "selfTradePreventionMode": "NONE"}

    def _find(self, q: dict[str, str], not_found: _Reply, readable: bool = False) -> dict[str, Any]:
        self._symbol(q)
        oid, cid = q.get("orderId"), q.get("origClientOrderId")
        if not oid and not cid:
            raise _Reply(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        mine = [o for o in (self._readable_orders() if readable else self.orders) if o["symbol"] == q["symbol"]]
        if oid:
            hit = [o for o in mine if str(o["orderId"]) == oid]
            if hit and cid and hit[0]["clientOrderId"] != cid:
                raise _Reply(400, -2039, "Client order ID is not correct for this order ID.")
        else:
            hit = [o for o in mine if o["clientOrderId"] == cid]
        if not hit:
            raise not_found
        return hit[-1]   # a reused client id: the latest order

    def _query_order(self, q: dict[str, str]) -> dict[str, Any]:
        o = self._find(q, _Reply(400, -2013, "Order does not exist."), readable=True)
        if self._archived(o):
            raise _Reply(400, -2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived.")
        return self._spot_view(o)

    def _cancel_order(self, q: dict[str, str]) -> dict[str, Any]:
        unknown = _Reply(400, -2011, "Unknown order sent.")
        o = self._find(q, unknown)
        if o["status"] not in OPEN_STATUSES:
            raise unknown
        left = o["origQty"] - o["executedQty"]
        asset, amount = (o["quote"], left * o["price"]) if o["side"] == "BUY" else (o["base"], left)
        self.balances[asset][1] -= amount
        self.balances[asset][0] += amount
        o["status"], o["updateTime"] = "CANCELED", self.server_ms()
        v = self._view(o)
        out = {k: v[k] for k in ("symbol", "orderId", "orderListId", "price", "origQty", "executedQty", "cummulativeQuoteQty",
                                 "status", "timeInForce", "type", "side", "origQuoteOrderQty", "selfTradePreventionMode")}
        out.update(origClientOrderId=o["clientOrderId"], clientOrderId=q.get("newClientOrderId") or f"cancel{o['orderId']}",
                   transactTime=o["updateTime"])
        return out

    def _open_orders(self, q: dict[str, str]) -> list[dict[str, Any]]:
        if q.get("symbol"):
            self._symbol(q)
        return [self._view(o) for o in self.orders
                if o["status"] in OPEN_STATUSES and (not q.get("symbol") or o["symbol"] == q["symbol"])]

    @staticmethod
    def _window(rows: list[dict[str, Any]], q: dict[str, str], id_key: str, id_param: str, time_key: str) -> list[dict[str, Any]]:
        """Binance's paging: ``{id_param}`` = rows with id >= it (oldest first), else the most recent;
        ``startTime``/``endTime`` inclusive; ``limit`` default 500, at most 1000."""
        try:
            limit = int(q.get("limit", 500))
        except ValueError:
            raise _Reply(400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.") from None
        if not 1 <= limit <= 1000:
            raise _Reply(400, -1130, "Invalid limit.")
        if "startTime" in q:
            rows = [r for r in rows if r[time_key] >= int(q["startTime"])]
        if "endTime" in q:
            rows = [r for r in rows if r[time_key] <= int(q["endTime"])]
        if q.get(id_param):
            return [r for r in rows if r[id_key] >= int(q[id_param])][:limit]
        return rows[-limit:] if "startTime" not in q else rows[:limit]

    def _check_lookup(self, q: dict[str, str]) -> None:
        """With ``lookup_window``: rest-api.md "All orders" / "Account trade list": "The time between startTime and
        endTime can't be longer than 24 hours." -> errors.md "-1127 MORE_THAN_XX_HOURS"."""
        if self.lookup_window and "startTime" in q and "endTime" in q and \
                int(q["endTime"]) - int(q["startTime"]) > 24 * 3_600_000:
            self.fired["lookup_window"] += 1
            raise _Reply(400, -1127, "More than 24 hours between startTime and endTime.")

    def _all_orders(self, q: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(q)["symbol"]
        self._check_lookup(q)
        mine = [o for o in self._readable_orders() if o["symbol"] == sym and not self._archived(o)]
        return [self._spot_view(o) for o in self._window(mine, q, "orderId", "orderId", "time")]

    def _my_trades(self, q: dict[str, str]) -> list[dict[str, Any]]:
        sym = self._symbol(q)["symbol"]
        self._check_lookup(q)
        rows = [t for t in self._readable_trades() if t["symbol"] == sym]
        if q.get("orderId"):
            rows = [t for t in rows if str(t["orderId"]) == q["orderId"]]
        return [dict(t) for t in self._window(rows, q, "id", "fromId", "time")]

    # ------------------------------------------------------------------ documented behaviours (off by default)
    def _lagging(self, since_ms: int, lag_ms: int, name: str) -> bool:
        """True while ``server_ms() < since_ms + lag_ms`` (counted in ``fired[name]``)."""
        if lag_ms and self.server_ms() < since_ms + lag_ms:
            self.fired[name] += 1
            return True
        return False

    def _readable_orders(self) -> list[dict[str, Any]]:
        """The orders a read sees. Binance serves order queries from "Memory => Database" and allOrders from
        the "Database" (rest-api.md "Query order (USER_DATA)" / "All orders (USER_DATA)", "Data Source"), which
        can trail the matching engine: with ``query_lag_ms`` an order stays unknown (-2013 "Order does not
        exist.", absent from allOrders) that long after it was accepted."""
        return [o for o in self.orders if not self._lagging(o["time"], self.query_lag_ms, "query_lag")]

    def _readable_trades(self) -> list[dict[str, Any]]:
        """Trades older than ``trade_lag_ms`` (myTrades' "Data Source: Memory => Database", rest-api.md
        "Account trade list (USER_DATA)"; futures userTrades likewise)."""
        return [t for t in self.trades if not self._lagging(t["time"], self.trade_lag_ms, "trade_lag")]

    def _archived(self, o: dict[str, Any]) -> bool:
        """errors.md "-2026 ORDER_ARCHIVED": "Order was canceled or expired with no executed qty over 90 days ago
        and has been archived." The fake archives such orders ``archive_after_days`` (of its clock) after their
        last update; None: never (Binance: 90)."""
        if self.archive_after_days is None or o["status"] not in ("CANCELED", "EXPIRED") or o["executedQty"]:
            return False
        if self.server_ms() - o["updateTime"] > self.archive_after_days * 86_400_000:
            self.fired["archived"] += 1
            return True
        return False

    def _expire_market(self, o: dict[str, Any], info: dict[str, Any], mkt: Decimal) -> None:
        """A MARKET order that runs out of liquidity: ``market_fill_fraction`` of it fills (rounded down to the
        step), the rest expires: status EXPIRED (enums.md "Order status": EXPIRED "e.g. ... MARKET orders that
        partially fill") with ``expiryReason`` (rest-api.md "Conditional fields in Order Responses":
        ``"expiryReason": "INSUFFICIENT_LIQUIDITY"``; enums.md "Expiry Reasons")."""
        assert self.market_fill_fraction is not None
        step = Decimal(next(x for x in info["filters"] if x["filterType"] == "LOT_SIZE")["stepSize"])
        part = o["origQty"] * self.market_fill_fraction
        part = (part // step) * step if step else part
        if part > 0:
            self._fill(o, mkt, self.taker_fee, from_locked=False, qty=part)
        o["status"], o["updateTime"], o["expiryReason"] = "EXPIRED", self.server_ms(), self.expiry_reason
        self.fired["partial_expired"] += 1

    def _spot_view(self, o: dict[str, Any]) -> dict[str, Any]:
        """:meth:`_view` plus ``expiryReason`` once the order has expired (rest-api.md: "When an order has expired")."""
        v = self._view(o)
        if o.get("expiryReason"):
            v["expiryReason"] = o["expiryReason"]
        return v

    def _account(self, q: dict[str, str]) -> dict[str, Any]:
        bal = [{"asset": a, "free": _s(f), "locked": _s(lk)} for a, (f, lk) in sorted(self.balances.items())]
        if q.get("omitZeroBalances") == "true":
            bal = [b for b in bal if Decimal(b["free"]) or Decimal(b["locked"])]
        bps = int(self.taker_fee * 10000)
        return {"makerCommission": int(self.maker_fee * 10000), "takerCommission": bps, "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": _s(self.maker_fee), "taker": _s(self.taker_fee), "buyer": _s(Decimal(0)),
                                    "seller": _s(Decimal(0))},
                "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.server_ms(),
                "accountType": "SPOT", "balances": bal, "permissions": ["SPOT"], "uid": 1}
