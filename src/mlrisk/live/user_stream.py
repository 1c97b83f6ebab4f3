"""Binance's user data stream (fills, order and algo-order updates, positions, balances, liquidations)
as normalised updates on a thread-safe queue, kept alive and reconnected as Binance documents it.

The documented mechanism differs per market (sources cited where each behaviour is implemented):

* **Spot**: the WebSocket API (``wss://ws-api.binance.com:443/ws-api/v3``). One request,
  ``userDataStream.subscribe.signature`` (``apiKey``, ``timestamp``, HMAC-SHA-256 ``signature`` of the
  alphabetically sorted params; any API key type), answers ``{"result": {"subscriptionId": n}}``;
  events then arrive as ``{"subscriptionId": n, "event": {...}}`` (binance-spot-api-docs
  web-socket-api.md "User Data Stream subscription", user-data-stream.md). The listenKey endpoints
  (``POST/PUT/DELETE /api/v3/userDataStream``) were retired on 2026-02-20 (CHANGELOG 2026-01-21), so
  spot has no key to keep alive: the connection lasts at most 24 h ("expect to be disconnected after
  the 24-hour mark"), a ``serverShutdown`` event asks for a new connection, ``eventStreamTerminated``
  ends the subscription.
* **USDT-M futures**: a listenKey from ``POST /fapi/v1/listenKey`` (valid 60 min; a POST while one is
  active returns it and extends it; ``PUT`` extends it by 60 min; ``DELETE`` closes it; developers.binance.com
  usds-margined-futures "User Data Streams"), read on ``wss://fstream.binance.com/private/ws/<listenKey>``
  (the 2026 split of the futures websocket hosts into ``/public``, ``/market`` and ``/private``:
  "Important WebSocket Change Notice"), cut after 24 h; ``listenKeyExpired`` is pushed when the key
  expires and no event follows until a valid key is used ("Event: User Data Stream Expired").
  Events: ``ORDER_TRADE_UPDATE``, ``ACCOUNT_UPDATE``, ``ALGO_UPDATE``.

:class:`UserStream` runs one connection in a daemon thread (the ``websockets`` library's sync client,
which answers the server's pings), reconnects with exponential backoff, and for futures keeps the
listen key alive (a ``PUT`` every ``keepalive_s``, well before the 60-minute expiry) from a second
thread, asking ``POST`` for a key before every connection (a fresh one after expiry). Events are not
replayed by Binance after a reconnect: every connection after the first, and every
``listenKeyExpired``, counts as a **gap** (``gaps``, ``on_gap``): the broker must then reconcile with
REST queries (orders, trades, position, balance), which stay the backstop.

All Binance field names live in the parsing part (:func:`parse_spot_event`,
:func:`parse_futures_event`), which is meant to move into the venue module. Times are epoch ms (UTC);
quantities in base asset, prices and quote amounts in quote asset, as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Literal, Union

from mlrisk.live.state import OrderStatus, now_ms
from mlrisk.live.venue import BINANCE_STATUS

log = logging.getLogger(__name__)

Market = Literal["spot", "futures"]


# ==================================================================== normalised updates
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


# ==================================================================== Binance parsing (moves to the venue module)
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


def spot_subscribe_request(api_key: str, api_secret: str, timestamp_ms: int, request_id: str) -> dict[str, Any]:
    """The ``userDataStream.subscribe.signature`` request (web-socket-api.md "Subscribe to User Data
    Stream through signature subscription": any API key type)."""
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp_ms}
    params["signature"] = ws_api_signature(params, api_secret)
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


def futures_stream_url(ws_url: str, listen_key: str) -> str:
    """The futures user-data connection: ``{ws_url}/private/ws/{listenKey}`` (``ws_url`` like
    ``wss://fstream.binance.com``)."""
    return f"{ws_url.rstrip('/')}/private/ws/{listen_key}"


def spot_stream_url(ws_api_url: str) -> str:
    """The spot WebSocket API endpoint: ``{ws_api_url}/ws-api/v3`` (``ws_api_url`` like
    ``wss://ws-api.binance.com:443``)."""
    return f"{ws_api_url.rstrip('/')}/ws-api/v3"


# ==================================================================== the client
class UserStream:
    """See the module docstring. ``exchange``: a signed :class:`mlrisk.exchange.ExchangeClient` of the
    same ``market`` (futures: its ``call`` gets, keeps alive and closes listen keys; spot: its API key and
    secret sign the subscription and its ``offset_ms`` corrects the timestamp); ``ws_url``: the stream
    host (futures ``wss://fstream.binance.com``, spot ``wss://ws-api.binance.com:443``);
    ``keepalive_s``: seconds between listen-key ``PUT``s (Binance: valid 60 min after each);
    ``backoff_s``/``max_backoff_s``: reconnect delays (doubling from the second failure in a row);
    ``stall_s``: seconds without any message (pings answered by the library do not count) before the
    connection is made again; ``on_gap(reason)``: called from the stream thread when events may have
    been missed. The thread starts with :meth:`start` and ends within about a second of :meth:`close`."""

    def __init__(self, exchange: Any, market: Market, ws_url: str, *, keepalive_s: float = 30 * 60.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, stall_s: float = 24 * 3600.0,
                 open_timeout_s: float = 5.0, on_gap: Callable[[str], None] | None = None) -> None:
        if market not in ("spot", "futures"):
            raise ValueError(f"market must be 'spot' or 'futures', not {market!r}")
        self.exchange, self.market, self.ws_url = exchange, market, ws_url
        self.keepalive_s, self.backoff_s, self.max_backoff_s = keepalive_s, backoff_s, max_backoff_s
        self.stall_s, self.open_timeout_s, self.on_gap = stall_s, open_timeout_s, on_gap
        self.updates: queue.Queue[Update] = queue.Queue()
        self.connects = 0          # connections on which the stream was live
        self.gaps = 0              # times events may have been missed (reconnects, expired keys)
        self.keepalives = 0        # listen-key PUTs that succeeded
        self.listen_keys = 0       # listen-key POSTs that succeeded
        self.state = "starting"    # "live", or why it is not
        self.listen_key: str | None = None
        self._gap_reason: str | None = None
        self._live = threading.Event()
        self._closing = threading.Event()
        self._renew = threading.Event()     # the keepalive thread found the key gone: reconnect with a new one
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"user-stream-{market}", daemon=True)
        self._keeper = threading.Thread(target=self._keep_alive, name=f"user-stream-keepalive-{market}", daemon=True)

    # ---------------------------------------------------------------- public
    def start(self) -> "UserStream":
        self._thread.start()
        if self.market == "futures":
            self._keeper.start()
        return self

    def __enter__(self) -> "UserStream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while a connection is open and the subscription is live."""
        return self._live.is_set()

    @property
    def healthy(self) -> bool:
        """Connected with nothing pending: no listen key known to be gone, not closing."""
        return self.connected and not self._renew.is_set() and not self._closing.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for a live subscription."""
        return self._live.wait(timeout_s)

    def drain(self) -> list[Update]:
        """Every update received and not yet drained, oldest first (never blocks)."""
        out: list[Update] = []
        while True:
            try:
                out.append(self.updates.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """End both threads; for futures, close the listen key (best effort)."""
        self._closing.set()
        for t in (self._thread, self._keeper):
            if t.is_alive():
                t.join(timeout=2.0)
        if self.market == "futures" and self.listen_key:
            try:
                self.exchange.call("futures_stream_close", listenKey=self.listen_key)
            except Exception as e:  # the key expires by itself within 60 min
                log.info("user stream: closing the listen key failed (%s)", type(e).__name__)

    # ---------------------------------------------------------------- the stream thread
    def _gap(self, why: str) -> None:
        """Called once the stream is live again after ``why``, so a REST reconciliation started now
        misses nothing: later changes arrive on the stream."""
        self.gaps += 1
        log.warning("user stream: %s: events may have been missed; reconcile by REST", why)
        if self.on_gap is not None:
            try:
                self.on_gap(why)
            except Exception:
                log.exception("user stream: on_gap raised")

    def _url(self) -> str:
        if self.market == "spot":
            return spot_stream_url(self.ws_url)
        # POST returns the active key (extended) or a new one when it expired (futures "User Data Streams").
        key = str(self.exchange.call("futures_stream_get_listen_key"))
        with self._lock:
            self.listen_key = key
        self.listen_keys += 1
        self._renew.clear()
        return futures_stream_url(self.ws_url, key)

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        failures = 0
        while not self._closing.is_set():
            try:
                url = self._url()
                with connect(url, open_timeout=self.open_timeout_s, close_timeout=0.5, max_size=2**22) as ws:
                    if self.market == "spot":
                        self._subscribe(ws)
                    self.connects += 1
                    self._live.set()
                    if self.connects > 1:
                        self._gap(self._gap_reason or "reconnected")
                    self._gap_reason = None
                    self.state = "live"
                    failures = 0
                    log.info("user stream: live (%s)", self.market)
                    self._receive(ws)
            except InvalidURI:
                self.state = f"down: {self.ws_url} is not a websocket URL"
                log.error("user stream: %s", self.state)
                return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as e:
                self.state = f"down: {type(e).__name__}: {' '.join(str(e).split())[:100]}"
                log.info("user stream: %s", self.state)
            except Exception as e:  # never let the thread die: REST remains the backstop
                self.state = f"down: {type(e).__name__}: {' '.join(str(e).split())[:100]}"
                log.warning("user stream: unexpected %s; reconnecting", self.state)
            self._live.clear()
            if self._closing.is_set():
                break
            if failures:
                self._pause(min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s))
            failures += 1

    def _subscribe(self, ws: Any) -> None:
        """Spot: subscribe with a signature; raise ConnectionError when refused."""
        key = self.exchange.client.API_KEY
        secret = self.exchange.client.API_SECRET
        rid = f"uds-{self.connects + 1}"
        ws.send(json.dumps(spot_subscribe_request(key, secret, now_ms() + int(self.exchange.offset_ms), rid)))
        end = time.monotonic() + self.open_timeout_s
        while time.monotonic() < end:
            answer = json.loads(ws.recv(timeout=max(end - time.monotonic(), 0.01)))
            if answer.get("id") != rid:
                continue
            if answer.get("status") != 200:
                err = answer.get("error") or {}
                raise ConnectionError(f"subscription refused: code {err.get('code')}: {str(err.get('msg'))[:80]}")
            return
        raise TimeoutError("no answer to userDataStream.subscribe.signature")

    def _receive(self, ws: Any) -> None:
        parse = parse_spot_event if self.market == "spot" else parse_futures_event
        last = time.monotonic()
        while not self._closing.is_set():
            if self._renew.is_set():
                self.state = "listen key gone"
                return
            try:
                message = ws.recv(timeout=0.2)
            except TimeoutError:
                if time.monotonic() - last > self.stall_s:
                    self.state = f"stalled: no message for {self.stall_s:g} s"
                    return
                continue
            last = time.monotonic()
            try:
                parsed = parse(json.loads(message))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("user stream: unreadable message skipped (%s)", type(e).__name__)
                continue
            for p in parsed:
                if isinstance(p, StreamControl):
                    if p.kind == "expired":
                        self._gap_reason = "the listen key expired"
                    self.state = f"stream {p.kind}"
                    return   # a new connection (futures: with a key from POST)
                self.updates.put(p)

    def _pause(self, seconds: float) -> None:
        self._closing.wait(seconds)

    # ---------------------------------------------------------------- the keepalive thread (futures)
    def _keep_alive(self) -> None:
        while not self._closing.wait(self.keepalive_s):
            with self._lock:
                key = self.listen_key
            if key is None:
                continue
            try:
                self.exchange.call("futures_stream_keepalive", listenKey=key)
                self.keepalives += 1
            except Exception as e:  # -1125 "This listenKey does not exist.": get a new one and reconnect
                with self._lock:
                    stale = key != self.listen_key   # the stream thread renewed it meanwhile
                if not stale:
                    log.warning("user stream: listen key keepalive failed (%s); renewing it", " ".join(str(e).split())[:120])
                    self._renew.set()


__all__ = ["LastFill", "OrderUpdate", "AlgoUpdate", "PositionUpdate", "BalanceUpdate", "StreamControl", "Update",
           "parse_spot_event", "parse_futures_event", "ws_api_signature", "spot_subscribe_request", "futures_stream_url", "spot_stream_url",
           "FUTURES_LIQUIDATION_PREFIXES", "UserStream"]
