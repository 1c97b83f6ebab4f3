"""Closed candles from the exchange's REST klines (:class:`PollingFeed`), with the staleness
watchdog (:class:`FeedStalled`). Times are epoch ms (UTC) unless named ``_s``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from mlrisk.errors import ExchangeError
from mlrisk.exit_codes import ExitCode
from mlrisk.live.state import now_ms
from mlrisk.times import from_ms

log = logging.getLogger(__name__)


class FeedStalled(ExchangeError):
    """No new closed candle arrived within the staleness limit: the bot stopped (state saved)."""

    exit_code = ExitCode.FEED_STALLED


class PollingFeed:
    """Closed candles from the exchange's REST klines, polled ``poll_delay_s`` after each close on
    the exchange's clock (:meth:`~mlrisk.exchange.ExchangeClient.server_time_ms`).

    Watchdog: when the expected candle is not served ``poll_delay_s`` after its close, or a request
    fails after the client's retries, it warns and tries again every ``poll_retry_s``; once the
    candle is ``max_stale_s`` late it raises :class:`FeedStalled` (the bot then stops; its state is
    already saved). ``sleep`` is injectable; every wait is cut in pieces of at most ``poll_retry_s``
    and ends early when ``stop()`` is true. ``idle``: called after each piece of a wait, pieces then
    at most ``idle_s`` seconds (the user data stream's drain between closes)."""

    def __init__(self, exchange: Any, symbol: str, interval: str, interval_ms: int, *, poll_delay_s: float = 2.0,
                 poll_retry_s: float = 5.0, max_stale_s: float = 300.0, stop: Callable[[], bool] = lambda: False,
                 sleep: Callable[[float], None] = time.sleep, warn: Callable[[str], None] = log.warning,
                 idle: Callable[[], object] | None = None, idle_s: float = 0.5) -> None:
        from mlrisk.data.sources import BinanceKlines

        self.exchange = exchange
        self.symbol, self.interval, self.interval_ms = symbol, interval, interval_ms
        self.poll_delay_ms = poll_delay_s * 1000
        self.poll_retry_s = poll_retry_s
        self.max_stale_ms = max_stale_s * 1000
        self.stop, self.sleep, self.warn = stop, sleep, warn
        self.idle, self.idle_s = idle, idle_s
        self._now: int | None = None
        self.klines = BinanceKlines(exchange, now_ms=self._server_now, progress=False)
        self.warnings = 0

    def _server_now(self) -> int:
        return self._now if self._now is not None else self.exchange.server_time_ms()

    def server_now(self) -> int:
        self._now = None
        self._now = self.exchange.server_time_ms()
        return self._now

    def fetch(self, start_ms: int) -> pd.DataFrame:
        """Closed candles from ``start_ms`` to now (one time request, then the klines pages)."""
        self.server_now()
        return self.klines.fetch(self.symbol, self.interval, self.interval_ms, start_ms)

    def history(self, start_ms: int) -> pd.DataFrame:
        """Closed candles from ``start_ms`` to now, retried like :meth:`wait_for` when the exchange
        fails (:class:`FeedStalled` after ``max_stale_s`` of failures)."""
        waited = 0.0
        while True:
            try:
                return self.fetch(start_ms)
            except ExchangeError as e:
                if waited >= self.max_stale_ms / 1000:
                    raise FeedStalled(f"cannot load the candle history for {waited:.0f} s (limit MLRISK_MAX_STALE_S "
                                      f"{self.max_stale_ms / 1000:.0f} s): {e}; stopped safely, state saved") from None
                self.warnings += 1
                self.warn(f"candle history not loaded: {e}; retrying")
                self._wait(self.poll_retry_s)
                waited += self.poll_retry_s
                if self.stop():
                    return pd.DataFrame()

    def _wait(self, seconds: float) -> None:
        slept = 0.0
        while not self.stop() and slept < seconds:
            step = min(seconds - slept, self.poll_retry_s, self.idle_s if self.idle is not None else seconds)
            self.sleep(step)
            slept += step
            if self.idle is not None:
                self.idle()

    def wait_for(self, next_open_ms: int) -> pd.DataFrame | None:
        """Closed candles with open time >= ``next_open_ms`` (at least one), or None when stopped."""
        due = next_open_ms + self.interval_ms + self.poll_delay_ms
        while not self.stop():
            try:
                now = self.server_now()
            except ExchangeError as e:
                self._late(next_open_ms, None, str(e))
                continue
            if now < due:
                self._wait(min((due - now) / 1000, self.poll_retry_s))  # then the exchange's clock again: it may jump
                continue
            try:
                df = self.klines.fetch(self.symbol, self.interval, self.interval_ms, next_open_ms)
            except ExchangeError as e:
                self._late(next_open_ms, now, str(e))
                continue
            if len(df):
                return df
            self._late(next_open_ms, now, "the exchange does not serve it yet")
        return None

    def _late(self, next_open_ms: int, now: int | None, why: str) -> None:
        close = next_open_ms + self.interval_ms
        late_ms = (now - close) if now is not None else None
        if late_ms is not None and late_ms > self.max_stale_ms:
            raise FeedStalled(f"no candle closing at {from_ms(close).isoformat()} after {late_ms / 1000:.0f} s "
                              f"(limit {self.max_stale_ms / 1000:.0f} s, MLRISK_MAX_STALE_S): {why}; stopped safely, "
                              "state saved: restart when the exchange serves candles again")
        self.warnings += 1
        if late_ms is None:  # the exchange's clock is unreachable too: the lateness by the local clock
            est = now_ms() + self.exchange.offset_ms - close
            late = f" ({est / 1000:.1f} s, local clock)"
        else:
            late = f" ({late_ms / 1000:.1f} s)"
        self.warn(f"candle closing at {from_ms(close).isoformat()} is late{late}: {why}; retrying")
        if now is None:
            self._stale_without_clock(next_open_ms)
        self._wait(self.poll_retry_s)

    def _stale_without_clock(self, next_open_ms: int) -> None:
        """The exchange's clock is unreachable too: judge staleness by the local clock."""
        late = now_ms() + self.exchange.offset_ms - (next_open_ms + self.interval_ms)
        if late > self.max_stale_ms:
            raise FeedStalled(f"the exchange has not answered for {late / 1000:.0f} s after the candle closing at "
                              f"{from_ms(next_open_ms + self.interval_ms).isoformat()} (limit "
                              f"{self.max_stale_ms / 1000:.0f} s, MLRISK_MAX_STALE_S); stopped safely, state saved")
