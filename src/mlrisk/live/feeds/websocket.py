"""Closed candles from the exchange's kline websocket, with REST polling as the fallback.

:class:`SocketFeed` wraps a :class:`~mlrisk.live.feeds.polling.PollingFeed` and has its interface
(``server_now``, ``history``, ``wait_for``, ``warnings``), so :func:`~mlrisk.live.loop.run_paper` runs
on either. A background thread holds one connection to ``{ws_url}/ws/{symbol lower}@kline_{interval}``
(the ``websockets`` library's sync client, which answers the server's pings), reconnects with
exponential backoff when the connection drops, is refused, or stalls (no message for ``stall_s``
seconds), and keeps the *closed* candles it receives (``k.x`` true; updates of a forming candle are
dropped, so nothing is ever seen before its close).

``wait_for(next_open_ms)`` returns that candle as soon as the stream delivers it, without a REST
request. When the stream has not delivered it ``poll_delay_s`` after its close (the exchange's clock,
estimated from the last measured offset, so no request is needed while waiting) it asks the
PollingFeed instead (its REST path, its retries and its staleness watchdog), and warns once per
fallback episode (then again only after the stream has delivered a candle in time). A candle later
than the expected one (a candle missed while reconnecting) makes it fetch the missing ones by REST.
A stream candle is the REST row the same kline carries (:func:`kline_row`), built into the table by
the same :func:`mlrisk.data.klines.klines_from_rows`. Times are epoch ms (UTC) unless named ``_s``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pandas as pd

from mlrisk.data.klines import klines_from_rows
from mlrisk.live.feeds.polling import PollingFeed
from mlrisk.live.feeds.replay import open_ms
from mlrisk.live.state import now_ms
from mlrisk.times import from_ms

log = logging.getLogger(__name__)

#: The kline payload's fields in the order of a REST kline row (``/api/v3/klines``): open time,
#: open, high, low, close, volume, close time, quote volume, trades, taker buy base, taker buy
#: quote, ignore.
ROW_FIELDS = ("t", "o", "h", "l", "c", "v", "T", "q", "n", "V", "Q", "B")


def stream_url(ws_url: str, symbol: str, interval: str) -> str:
    """The raw kline stream of one symbol: ``{ws_url}/ws/{symbol lower}@kline_{interval}``. Spot's
    ``ws_url`` is a host (web-socket-streams.md: ``wss://stream.binance.com:9443/ws/<streamName>``);
    USDT-M futures' carries its routed path since 2026 (``wss://fstream.binance.com/market``: klines are
    a ``/market`` stream; the legacy ``/ws/`` path was retired on 2026-04-23 and stays silent)."""
    return f"{ws_url.rstrip('/')}/ws/{symbol.lower()}@kline_{interval}"


def kline_row(message: Any, symbol: str, interval: str) -> list[Any] | None:
    """The REST kline row of a *closed* candle in one stream message (a raw ``kline`` event, or one
    wrapped by a combined stream as ``{"stream", "data"}``); None for anything else: another event,
    symbol or interval, a candle still forming (``k.x`` false), or a malformed payload."""
    if isinstance(message, dict) and isinstance(message.get("data"), dict):
        message = message["data"]
    if not isinstance(message, dict) or message.get("e") != "kline":
        return None
    k = message.get("k")
    if not isinstance(k, dict) or k.get("x") is not True or k.get("s") != symbol or k.get("i") != interval:
        return None
    if any(f not in k for f in ROW_FIELDS[:7]):
        return None
    return [k.get(f, "0") for f in ROW_FIELDS]


class SocketFeed:
    """See the module docstring. ``polling``: the REST feed (its ``stop``, ``warn``, ``poll_delay_s``
    and exchange client are used); ``ws_url``: the stream host (``wss://stream.binance.com:9443``);
    ``stall_s``: seconds without any message before the connection counts as stalled and is
    reconnected; ``backoff_s``/``max_backoff_s``: reconnect delays (doubling); ``open_timeout_s``:
    the longest connection handshake. The thread starts at construction and ends within about a
    second of ``polling.stop()`` turning true or :meth:`close`."""

    def __init__(self, polling: PollingFeed, ws_url: str, *, stall_s: float = 30.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, open_timeout_s: float = 5.0) -> None:
        self.polling = polling
        self.url = stream_url(ws_url, polling.symbol, polling.interval)
        self.stall_s, self.backoff_s, self.max_backoff_s = stall_s, backoff_s, max_backoff_s
        self.open_timeout_s = min(open_timeout_s, stall_s)
        self.connects = 0                 # connections opened
        self.from_socket = 0              # candles returned from the stream
        self.from_rest = 0                # wait_for calls answered by REST
        self.own_warnings = 0
        self.state = "connecting"         # "connected", or why it is not
        self.last_message_s = 0.0         # time.monotonic() of the last stream message
        self._closed: dict[int, list[Any]] = {}   # open ms -> REST row of a closed candle from the stream
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._falling_back = False
        self._thread = threading.Thread(target=self._run, name="kline-websocket", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the PollingFeed interface
    @property
    def warnings(self) -> int:
        return self.polling.warnings + self.own_warnings

    def server_now(self) -> int:
        return self.polling.server_now()

    def history(self, start_ms: int) -> pd.DataFrame:
        return self.polling.history(start_ms)

    def wait_for(self, next_open_ms: int) -> pd.DataFrame | None:
        """Closed candles with open time >= ``next_open_ms`` (at least one, contiguous), or None
        when stopped: from the stream when it delivers the candle by ``poll_delay_s`` after its
        close, else (and for candles the stream skipped) from the PollingFeed's REST path."""
        iv = self.polling.interval_ms
        due = next_open_ms + iv + self.polling.poll_delay_ms
        while not self._stopped():
            waited = False
            with self._cond:
                for t in [t for t in self._closed if t < next_open_ms]:
                    del self._closed[t]
                rows = self._run_from(next_open_ms)
                later = bool(self._closed) and not rows
                if not rows and not later:
                    left_ms = due - self._exchange_now()
                    if left_ms > 0:
                        self._cond.wait(min(left_ms / 1000, 0.25))
                        waited = True
            if waited:
                if self.polling.idle is not None:  # the user data stream's drain, outside the lock
                    self.polling.idle()
                continue
            if rows:
                if self._falling_back:
                    self._falling_back = False
                    log.info("websocket: the kline stream delivers closed candles again")
                self.from_socket += 1
                return klines_from_rows(rows)
            return self._from_rest(next_open_ms, gap=later)
        return None

    @property
    def buffered(self) -> list[int]:
        """Open times (ms) of the closed candles received and not yet returned."""
        with self._cond:
            return sorted(self._closed)

    def close(self) -> None:
        """End the stream thread (within about a second)."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    # ---------------------------------------------------------------- helpers (main thread)
    def _stopped(self) -> bool:
        return self._closing.is_set() or self.polling.stop()

    def _exchange_now(self) -> int:
        """The exchange's clock estimated from the local clock and the last measured offset (ms)."""
        return now_ms() + self.polling.exchange.offset_ms

    def _run_from(self, start_ms: int) -> list[list[Any]]:
        """Take the stream rows of contiguous closed candles from ``start_ms`` out of the buffer
        (call under ``_cond``)."""
        rows, t = [], start_ms
        while t in self._closed:
            rows.append(self._closed.pop(t))
            t += self.polling.interval_ms
        return rows

    def _from_rest(self, next_open_ms: int, gap: bool) -> pd.DataFrame | None:
        close = from_ms(next_open_ms + self.polling.interval_ms).isoformat()
        if gap:
            why = f"the stream skipped the candle closing at {close} (a later one arrived): fetching it by REST"
        else:
            why = (f"the stream has not delivered the candle closing at {close} "
                   f"{self.polling.poll_delay_ms / 1000:g} s after its close ({self.state}): polling REST "
                   "until it delivers again")
        if gap:
            self.own_warnings += 1
            self.polling.warn(f"websocket: {why}")
        elif not self._falling_back:
            self._falling_back = True
            self.own_warnings += 1
            self.polling.warn(f"websocket: {why}")
        self.from_rest += 1
        df = self.polling.wait_for(next_open_ms)
        if df is None or not len(df):
            return df
        last = int(open_ms(df)[-1])
        with self._cond:
            more = self._run_from(last + self.polling.interval_ms)
        return pd.concat([df, klines_from_rows(more)], ignore_index=True) if more else df

    # ---------------------------------------------------------------- the stream thread
    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        failures = 0
        while not self._stopped():
            try:
                with connect(self.url, open_timeout=self.open_timeout_s, close_timeout=0.5,
                             max_size=2**20) as ws:
                    self.connects += 1
                    self.state = "connected"
                    failures = 0
                    log.info("websocket: connected to %s", self.url)
                    self._receive(ws)
            except InvalidURI:
                self.state = f"down: {self.url} is not a websocket URL"
                log.error("websocket: %s", self.state)
                return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as e:
                self.state = f"down: {type(e).__name__}: {' '.join(str(e).split())[:100]}"
                log.info("websocket: %s", self.state)
            except Exception as e:  # never let the stream thread die: REST still covers every candle
                self.state = f"down: {type(e).__name__}: {' '.join(str(e).split())[:100]}"
                log.warning("websocket: unexpected %s; reconnecting", self.state)
            if self._stopped():
                break
            failures += 1
            self._pause(min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s))

    def _receive(self, ws: Any) -> None:
        """Read messages until stopped or stalled (then the connection is closed and made again)."""
        last = time.monotonic()
        while not self._stopped():
            try:
                message = ws.recv(timeout=0.2)
            except TimeoutError:
                if time.monotonic() - last > self.stall_s:
                    self.state = f"stalled: no message for {self.stall_s:g} s"
                    log.info("websocket: %s; reconnecting", self.state)
                    return
                continue
            last = self.last_message_s = time.monotonic()
            try:
                row = kline_row(json.loads(message), self.polling.symbol, self.polling.interval)
            except ValueError:
                continue
            if row is None:
                continue
            with self._cond:
                self._closed[int(row[0])] = row
                self._cond.notify_all()

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopped() and time.monotonic() < end:
            self._closing.wait(min(0.1, max(end - time.monotonic(), 0)))
