"""Alerts through apprise (``MLRISK_ALERT_URLS``: one URL per target, Telegram, Discord, Slack,
e-mail, a webhook...): a sink of the journal's observer (:mod:`mlrisk.live.observe`) that sends a
message on start and stop, on each fill, on a halt (with its reason) and when it lifts, on a health
crossing, on a stalled feed (a candle 60 s late, a history that will not load) and on repeated
exchange errors (``MLRISK_ALERT_ERRORS`` within :data:`ERROR_WINDOW_S`).

**The rate limit** (:class:`RateLimit`), per kind of message (start, stop, fill, halt, health,
feed, errors): the first message is sent at once; the next ones of that kind within
``MLRISK_ALERT_COOLDOWN_S`` are held back and counted, and when the cooldown ends one summary says
"N more ... suppressed" with the last of them (then a new cooldown starts, so a storm that goes on is
one message per cooldown). A ``stop`` sends the pending summaries first; 0 turns the limit off.

**Never in the way of trading**: the loop only puts the message in a bounded queue
(:data:`QUEUE_SIZE`; when it is full the message is dropped and counted); a background thread
sends it. A failed send is logged once (the first failure after a success), never with the URL;
apprise's own logging is silenced, and the HTTP libraries' lines that name a piece of an alert URL are
dropped, since they can show a target's token. On
stop the thread is given :data:`CLOSE_S` to send what is queued.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from mlrisk.errors import SettingsError
from mlrisk.live.observe import Fact

log = logging.getLogger(__name__)

QUEUE_SIZE = 256          #: messages waiting to be sent, at most
CLOSE_S = 10.0            #: seconds the sending thread is given, at stop, to send what is queued
ERROR_WINDOW_S = 300.0    #: MLRISK_ALERT_ERRORS exchange errors within this many seconds make an alert
#: the alert kind of each fact kind (facts of other kinds are metrics only)
KINDS = {"start": "start", "stop": "stop", "fill": "fill", "halt": "halt", "resume": "resume", "health": "health",
         "stall": "feed", "exchange_error": "errors"}
_WHAT = {"start": "start", "stop": "stop", "fill": "fill", "halt": "halt", "resume": "halt lifted", "health": "health",
         "feed": "feed stall", "errors": "exchange error"}
_CLOSE = object()


@dataclass
class _Held:
    until: float      # the cooldown's end (clock seconds)
    held: int = 0     # messages held back since the last one sent
    last: str = ""


class RateLimit:
    """Per kind: the first message passes, the next ones within ``cooldown_s`` are held and counted
    (:meth:`offer`); :meth:`due` gives the summaries whose cooldown has ended. ``clock``: seconds."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_s, self.clock = cooldown_s, clock
        self.kinds: dict[str, _Held] = {}

    def offer(self, kind: str, text: str) -> bool:
        """True: send ``text`` now; False: held back (counted for the summary)."""
        if self.cooldown_s <= 0:
            return True
        now = self.clock()
        h = self.kinds.get(kind)
        if h is None or (now >= h.until and h.held == 0):
            self.kinds[kind] = _Held(now + self.cooldown_s)
            return True
        h.held += 1
        h.last = text
        return False

    def due(self, flush: bool = False) -> list[tuple[str, str]]:
        """(kind, summary) for each kind whose cooldown has ended with messages held (all of them
        with ``flush``); each summary starts a new cooldown."""
        now, out = self.clock(), []
        for kind, h in self.kinds.items():
            if h.held and (flush or now >= h.until):
                what = _WHAT.get(kind, kind)
                out.append((kind, f"{h.held} more {what} message{'s' * (h.held != 1)} suppressed "
                                  f"(within {self.cooldown_s:g} s); the last: {h.last}"))
                h.held, h.last, h.until = 0, "", now + self.cooldown_s
        return out

    def next_due(self) -> float | None:
        """Clock seconds when the next summary falls due (None: none held)."""
        held = [h.until for h in self.kinds.values() if h.held]
        return min(held) if held else None


THREAD = "mlrisk-alerts"   #: the sending thread's name


class _Redact(logging.Filter):
    """Drops the HTTP libraries' records that contain a piece of an alert URL (urllib3's debug lines and
    retry warnings name the request's URL, and a target's token is often in its path), from any
    thread (apprise sends from a pool of its own)."""

    pieces: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return False
        return not any(p in text for p in self.pieces)


def _pieces(url: str) -> set[str]:
    """The parts of an apprise URL that may be secret: every run of 6 or more characters between
    separators after the scheme (an IP address, shared with other hosts, is not one)."""
    import ipaddress

    out = set()
    for p in re.split(r"[/:@?&=#,;\s]+", url.split("://", 1)[-1]):
        if len(p) < 6 or p == "localhost":
            continue
        try:
            ipaddress.ip_address(p)
            continue
        except ValueError:
            out.add(p)
    return out


def _quiet(urls: Sequence[str]) -> None:
    """apprise's logger says nothing (its debug and failure lines can name a target's URL); the HTTP
    libraries drop their lines that name a piece of an alert URL (the exchange client's are kept)."""
    import requests  # noqa: F401  (apprise's HTTP client: its loggers exist from here on)

    a = logging.getLogger("apprise")
    a.setLevel(logging.CRITICAL + 1)
    a.propagate = False
    for u in urls:
        _Redact.pieces |= _pieces(u)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("urllib3", "requests")]
    for name in {"urllib3", "requests", *names}:
        lg = logging.getLogger(name)
        if not any(isinstance(f, _Redact) for f in lg.filters):
            lg.addFilter(_Redact())


def _scheme(url: str) -> str:
    return url.split("://", 1)[0][:20]


class Alerter:
    """The alerts (see the module docstring) to ``urls`` (apprise URLs, kept secret). ``cooldown_s``:
    the rate limit's; ``errors``: exchange errors within :data:`ERROR_WINDOW_S` that make an alert;
    ``clock``: seconds (monotonic). Raises :class:`~mlrisk.errors.SettingsError` when apprise does not
    know a URL (named by its position and scheme, never its text)."""

    def __init__(self, urls: Sequence[SecretStr], cooldown_s: float = 300.0, errors: int = 3,
                 clock: Callable[[], float] = time.monotonic, title: str = "mlrisk") -> None:
        import apprise

        _quiet([u.get_secret_value() for u in urls])
        self._apprise = apprise.Apprise()
        for i, u in enumerate(urls, 1):
            if not self._apprise.add(u.get_secret_value()):
                raise SettingsError(f"MLRISK_ALERT_URLS: URL {i} ({_scheme(u.get_secret_value())}://...) is not one "
                                    "apprise can send to: see https://github.com/caronc/apprise/wiki for the forms")
        self._types = {"halt": apprise.NotifyType.WARNING, "health": apprise.NotifyType.WARNING,
                       "feed": apprise.NotifyType.FAILURE, "errors": apprise.NotifyType.FAILURE}
        self._info = apprise.NotifyType.INFO
        self.limit = RateLimit(cooldown_s, clock)
        self.errors, self.clock, self.title = errors, clock, title
        self.context = ""                  # "BTCUSDT paper: " once the bot has started
        self.sent = self.failed = self.dropped = 0
        self._error_times: deque[float] = deque()
        self._failing = False
        self._abandoned = False
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name=THREAD, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the observer's side (any thread)
    def record(self, record: dict[str, Any]) -> None:
        """Journal lines: only their facts make alerts."""

    def fact(self, f: Fact) -> None:
        kind = KINDS.get(f.kind)
        if kind is None:
            return
        if f.kind == "start":
            self.context = f"{f.labels.get('symbol')} {f.labels.get('mode')}: "
        self._put((kind, f.text))

    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("alerts: the queue is full (%d messages not sent yet): dropping new ones", QUEUE_SIZE)

    def close(self) -> None:
        """Send what is queued (and the pending summaries), waiting :data:`CLOSE_S` at most; what is
        still queued then is dropped (the send in progress, if any, ends by its own timeout)."""
        t = time.monotonic()
        try:
            self._queue.put(_CLOSE, timeout=CLOSE_S)
            self._thread.join(max(0.0, CLOSE_S - (time.monotonic() - t)))
        except queue.Full:
            pass
        self._abandoned = True

    # ------------------------------------------------------------------ the sending thread
    def _run(self) -> None:
        while True:
            due = self.limit.next_due()
            try:
                item = self._queue.get(timeout=None if due is None else max(0.0, due - self.clock()) + 0.01)
            except queue.Empty:
                item = None
            if self._abandoned:
                return
            if item is _CLOSE:
                for _, text in self.limit.due(flush=True):
                    self._send("summary", text)
                return
            if item is not None:
                kind, text = item
                if kind == "stop":
                    for k, summary in self.limit.due(flush=True):
                        self._send(k, summary)
                if kind == "errors":
                    text = self._errors(text)
                if text is not None and self.limit.offer(kind, text):
                    self._send(kind, text)
            for k, summary in self.limit.due():
                self._send(k, summary)

    def _errors(self, text: str) -> str | None:
        """An exchange error: an alert once ``errors`` of them fall within :data:`ERROR_WINDOW_S`."""
        now = self.clock()
        self._error_times.append(now)
        while self._error_times and self._error_times[0] < now - ERROR_WINDOW_S:
            self._error_times.popleft()
        n = len(self._error_times)
        if n < self.errors:
            return None
        return f"{n} exchange errors within {ERROR_WINDOW_S:g} s; the last: {text.removeprefix('exchange: ')}"

    def _send(self, kind: str, text: str) -> None:
        if self._abandoned:
            return
        try:
            ok = bool(self._apprise.notify(body=self.context + text, title=self.title,
                                           notify_type=self._types.get(kind, self._info)))
        except Exception:
            ok = False
        if ok:
            self.sent += 1
            self._failing = False
            return
        self.failed += 1
        if not self._failing:
            self._failing = True
            log.warning("alerts: a message was not delivered to every target (the URLs are not shown); "
                        "further failures are not logged until one succeeds")
