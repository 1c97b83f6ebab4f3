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
  usds-margined-futures "User Data Streams"), read on ``wss://fstream.binance.com/private/ws?listenKey=<listenKey>`` (or ``/ws/<listenKey>``)
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

Every Binance field name, request and URL form lives in :mod:`mlrisk.live.venue` (its "user data
stream" part: :func:`~mlrisk.live.venue.parse_spot_event`, :func:`~mlrisk.live.venue.parse_futures_event`,
the normalised update types); this module keeps the connections. Times are epoch ms (UTC);
quantities in base asset, prices and quote amounts in quote asset, as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable, Literal

from mlrisk.live.state import now_ms
from mlrisk.live.venue import (StreamControl, Update, futures_close_listen_key, futures_keep_listen_key,
                               futures_listen_key, futures_stream_url, parse_futures_event, parse_spot_event,
                               spot_subscription)

log = logging.getLogger(__name__)

Market = Literal["spot", "futures"]


# ==================================================================== the client
class UserStream:
    """See the module docstring. ``exchange``: a signed :class:`mlrisk.exchange.ExchangeClient` of the
    same ``market`` (futures: it gets, keeps alive and closes listen keys; spot: its API key and
    secret sign the subscription and its ``offset_ms`` corrects the timestamp); ``ws_url``: the stream
    URL (spot: the WebSocket API, ``wss://ws-api.binance.com:443/ws-api/v3``; futures: the private
    host, ``wss://fstream.binance.com/private``, the key added in ``key_form``, see
    :func:`mlrisk.live.venue.futures_stream_url`);
    ``keepalive_s``: seconds between listen-key ``PUT``s (Binance: valid 60 min after each);
    ``backoff_s``/``max_backoff_s``: reconnect delays (doubling from the second failure in a row);
    ``stall_s``: seconds without any message (pings answered by the library do not count) before the
    connection is made again; ``on_gap(reason)``: called from the stream thread when events may have
    been missed. The thread starts with :meth:`start` and ends within about a second of :meth:`close`."""

    def __init__(self, exchange: Any, market: Market, ws_url: str, *, keepalive_s: float = 30 * 60.0,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, stall_s: float = 24 * 3600.0,
                 open_timeout_s: float = 5.0, on_gap: Callable[[str], None] | None = None,
                 key_form: str = "query") -> None:
        if market not in ("spot", "futures"):
            raise ValueError(f"market must be 'spot' or 'futures', not {market!r}")
        self.exchange, self.market, self.ws_url = exchange, market, ws_url
        self.keepalive_s, self.backoff_s, self.max_backoff_s = keepalive_s, backoff_s, max_backoff_s
        self.stall_s, self.open_timeout_s, self.on_gap = stall_s, open_timeout_s, on_gap
        self.key_form = key_form
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
                futures_close_listen_key(self.exchange, self.listen_key)
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
            return self.ws_url
        # POST returns the active key (extended) or a new one when it expired (futures "User Data Streams").
        key = futures_listen_key(self.exchange)
        with self._lock:
            self.listen_key = key
        self.listen_keys += 1
        self._renew.clear()
        return futures_stream_url(self.ws_url, key, self.key_form)

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
        rid = f"uds-{self.connects + 1}"
        ws.send(json.dumps(spot_subscription(self.exchange, rid, now_ms())))
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
                futures_keep_listen_key(self.exchange, key)
                self.keepalives += 1
            except Exception as e:  # -1125 "This listenKey does not exist.": get a new one and reconnect
                with self._lock:
                    stale = key != self.listen_key   # the stream thread renewed it meanwhile
                if not stale:
                    log.warning("user stream: listen key keepalive failed (%s); renewing it", " ".join(str(e).split())[:120])
                    self._renew.set()


# ==================================================================== between closes
class StreamPump:
    """The bot's side of a :class:`UserStream`: :meth:`drain` (the feeds' idle callback, on the loop's
    thread, about every ``idle_s`` while it waits for a close) first runs ``reconcile()`` when the
    stream reported a gap since the last drain (a reconnect or an expired key: events may be lost),
    then passes each queued update to ``apply(update)`` (execution's ``apply_update``: a list of
    ``(event kind, message)``) and writes each line with ``event(kind, **fields)`` (the journal's).
    An error in either is logged and repaired by a REST reconciliation at a later drain (not before
    ``retry_s`` seconds); the REST refresh at each close stays the backstop."""

    def __init__(self, stream: UserStream, apply: Callable[[Update], list[tuple[str, str]]],
                 reconcile: Callable[[], list[str]], event: Callable[..., None], *, retry_s: float = 5.0) -> None:
        self.stream, self.apply, self.reconcile, self.event = stream, apply, reconcile, event
        self.retry_s = retry_s
        self.applied = 0            # updates passed to execution
        self.reconciliations = 0    # REST reconciliations run after a gap or an error
        self._gap = threading.Event()
        self._why = ""
        self._not_before = 0.0
        stream.on_gap = self.on_gap

    def on_gap(self, reason: str) -> None:
        """Called on the stream's thread: reconcile at the next drain (never inline)."""
        self._why = reason
        self._gap.set()

    def drain(self) -> int:
        """Apply what the stream delivered (see the class docstring); returns the updates applied."""
        if self._gap.is_set() and time.monotonic() >= self._not_before:
            self._gap.clear()
            try:
                lines = self.reconcile()
                self.reconciliations += 1
                self.event("stream_reconcile", reason=self._why, lines=lines)
            except Exception as e:
                self._retry(f"REST reconciliation failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}")
        n = 0
        for u in self.stream.drain():
            try:
                for kind, message in self.apply(u):
                    self.event(kind, message=message)
            except Exception as e:
                self._retry(f"update not applied ({type(u).__name__}): {type(e).__name__}: {' '.join(str(e).split())[:160]}")
            n += 1
        self.applied += n
        return n

    def _retry(self, message: str) -> None:
        self.event("warning", message=f"user data stream: {message}; reconciling by REST")
        self._why = message
        self._not_before = time.monotonic() + self.retry_s
        self._gap.set()

    def close(self) -> None:
        self.stream.close()


__all__ = ["Market", "UserStream", "StreamPump"]
