"""A Binance-compatible kline websocket on 127.0.0.1 for tests (the ``websockets`` library's server,
an ephemeral port): ``with FakeKlineWS("BTCUSDT", "1h") as ws:``, then connect to
``f"{ws.url}/ws/btcusdt@kline_1h"``.

It streams Binance kline events (``{"e": "kline", "E", "s", "k": {"t", "T", "s", "i", "f", "L", "o",
"c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"}}``) to every open connection: :meth:`send_candle`
sends updates of a candle still forming (``x`` false, other prices and volumes) and then the closing
one (``x`` true, exactly the REST row's values); between candles a heartbeat (an update of the next,
forming candle) every ``heartbeat_s``, as the real stream sends updates every second or two.

Faults: :meth:`stall` (connections stay open, nothing is sent, messages meanwhile are lost) and
:meth:`resume`; :meth:`drop` (every open connection is cut without a close frame); ``refuse = True``
(handshakes are answered HTTP 503). ``paths`` logs each accepted connection's request path.

Paths, as Binance documents them (``market``):

- ``"spot"`` (binance-spot-api-docs web-socket-streams.md "General WSS information"): raw streams at
  ``/ws/<streamName>``, combined streams at ``/stream?streams=<s1>/<s2>`` whose events are wrapped as
  ``{"stream": "<streamName>", "data": <rawPayload>}``.
- ``"futures"`` (USD-M's 2026 routed paths: https://developers.binance.com/zh-CN/docs/products/caas/market-data-streams
  "USD-M Futures routes streams by path"; legacy URLs retired 2026-04-23, github.com/ccxt/go-binance pull 809):
  klines are a ``/market`` stream: ``/market/ws/<stream>`` and ``/market/stream?streams=...`` deliver;
  ``/public/...`` (high-frequency book data) and ``/private/...`` (user data) accept the connection but never
  deliver a kline. The legacy ``/ws/<stream>`` / ``/stream?streams=`` deliver only while ``legacy_paths``
  (the default); with ``legacy_paths=False`` they connect and stay silent, as Binance documents ("A connection
  with no routed path only receives /public data ... This fails silently rather than erroring"), or, with
  ``legacy_status`` set (e.g. 404), the handshake is refused with that HTTP status.

Only the fake's own stream (``<symbol lower>@kline_<interval>``) carries events; a connection for another
stream name is accepted and stays silent. Any other path is refused with HTTP 404.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.server import ServerConnection, serve


class FakeKlineWS:
    def __init__(self, symbol: str = "BTCUSDT", interval: str = "1h", interval_ms: int = 3_600_000,
                 heartbeat_s: float | None = 0.1, first_open_ms: int | None = None, market: str = "spot",
                 legacy_paths: bool = True, legacy_status: int | None = None) -> None:
        if market not in ("spot", "futures"):
            raise ValueError(f"market must be 'spot' or 'futures', not {market!r}")
        self.symbol, self.interval, self.interval_ms = symbol, interval, interval_ms
        self.market, self.legacy_paths, self.legacy_status = market, legacy_paths, legacy_status
        self.heartbeat_s = heartbeat_s
        self.refuse = False
        self.paths: list[str] = []
        self._stalled = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[ServerConnection, queue.Queue[str]] = {}
        self.silent = 0                           # connections accepted that never get a kline (wrong or legacy path)
        self._last: list[Any] | None = None       # the last closed row sent (for heartbeats)
        self.first_open_ms = first_open_ms        # the forming candle of heartbeats before any candle is sent
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request,
                             compression=None, close_timeout=0.5)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def __enter__(self) -> "FakeKlineWS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ test controls
    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._clients)

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``n`` connections have been accepted in all (``len(paths) >= n``) and one is open."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.paths) >= n and self.open_connections:
                return True
            time.sleep(0.01)
        return False

    def send_candle(self, row: list[Any], partials: int = 2, closed: bool = True) -> None:
        """Stream one candle (a REST kline row of 12 fields): ``partials`` updates while it forms
        (close at the open price, a fraction of the volume: never the final values), then, if
        ``closed``, the closing event with the row's values."""
        o = float(row[1])
        for j in range(partials):
            part = list(row)
            part[2] = part[4] = f"{o:.2f}"   # high = close = open
            part[3] = f"{o * 0.999:.2f}"
            part[5] = f"{float(row[5]) * (j + 1) / (partials + 2):.5f}"
            self._broadcast(self.event(part, closed=False))
        if closed:
            self._broadcast(self.event(row, closed=True))
            self._last = list(row)

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def drop(self) -> None:
        """Cut every open connection (TCP shutdown, no close frame)."""
        with self._lock:
            conns = list(self._clients)
        for c in conns:
            try:
                c.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ wire format
    def event(self, row: list[Any], closed: bool) -> str:
        """A kline event for ``row`` (a REST kline row)."""
        t = int(row[0])
        k = {"t": t, "T": int(row[6]), "s": self.symbol, "i": self.interval, "f": 100, "L": 200, "o": row[1],
             "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": int(row[8]), "x": closed, "q": row[7],
             "V": row[9], "Q": row[10], "B": row[11]}
        return json.dumps({"e": "kline", "E": int(row[6]) + 1 if closed else t + 1000, "s": self.symbol, "k": k})

    def _heartbeat(self) -> str | None:
        if self._last is None:
            if self.first_open_ms is None:
                return None
            t, c = self.first_open_ms, "1.00"
        else:
            t, c = int(self._last[0]) + self.interval_ms, self._last[4]
        return self.event([t, c, c, c, c, "0.00000", t + self.interval_ms - 1, "0", 0, "0", "0", "0"], closed=False)

    # ------------------------------------------------------------------ server
    def _broadcast(self, message: str) -> None:
        if self._stalled.is_set():
            return  # a silent stall: the message is lost
        with self._lock:
            for q in self._clients.values():
                q.put(message)

    @property
    def stream(self) -> str:
        """This fake's stream name: ``<symbol lower>@kline_<interval>``."""
        return f"{self.symbol.lower()}@kline_{self.interval}"

    def route(self, path: str) -> tuple[str, bool]:
        """What a request path gets: (``"deliver"``, ``"silent"``, ``"legacy"`` or ``"refuse"``, combined?)."""
        u = urlparse(path)
        prefix = ""
        if self.market == "futures" and u.path.split("/")[1:2] and u.path.split("/")[1] in ("market", "public", "private"):
            prefix = "/" + u.path.split("/")[1]
        rest = u.path[len(prefix):]
        if rest.startswith("/ws/") and len(rest) > 4:
            streams, combined = [rest[4:]], False
        elif rest == "/stream":
            streams, combined = parse_qs(u.query).get("streams", [""])[0].split("/"), True
        else:
            return "refuse", False
        mine = self.stream in streams
        if self.market == "spot" or prefix == "/market":
            return ("deliver" if mine else "silent"), combined
        if prefix:                                   # /public or /private: no kline there
            return "silent", combined
        return ("deliver" if mine and self.legacy_paths else "legacy"), combined

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if self.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "refused by the test\n")
        kind, _ = self.route(request.path)
        if kind == "refuse" or (kind == "legacy" and self.legacy_status is not None):
            return connection.respond(HTTPStatus(self.legacy_status if kind == "legacy" else 404), "not found\n")
        return None

    def _handle(self, connection: ServerConnection) -> None:
        q: queue.Queue[str] = queue.Queue()
        kind, combined = self.route(connection.request.path)
        with self._lock:
            self.paths.append(connection.request.path)
            if kind == "deliver":
                self._clients[connection] = q
            else:
                self.silent += 1
        if kind != "deliver":       # connected, and nothing ever comes (Binance's silent failure)
            try:
                while not self._stopping.is_set() and connection.state is not State.CLOSED:
                    self._stopping.wait(0.05)
            finally:
                connection.close()
            return
        try:
            while not self._stopping.is_set():
                try:
                    message = q.get(timeout=self.heartbeat_s or 0.05)
                except queue.Empty:
                    message = None if self.heartbeat_s is None else self._heartbeat()
                if connection.state is State.CLOSED:
                    break
                if message is None or self._stalled.is_set():
                    continue
                connection.send(f'{{"stream": "{self.stream}", "data": {message}}}' if combined else message)
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._lock:
                self._clients.pop(connection, None)
