"""What the bot logs, seen from outside: the journal's lines turned into facts once, for the metrics
(:mod:`mlrisk.live.metrics`) and the alerts (:mod:`mlrisk.live.alerts`).

Every line the bot writes through :class:`~mlrisk.live.journal.CandleLog` (one per candle, and the
events: start, stop, halted, warning, stream, liquidated, health, ...) is handed to an
:class:`Observer`, which reads it into :class:`Fact` objects (:class:`Facts`: a fill, a halt or its
lifting, a late or stalled feed, an exchange error, start, stop, a health crossing) and passes the
line and its facts to its sinks. The bot's code paths stay as they are: what it logs is what is
measured and what is alerted on, and nothing here can change a decision. A sink that fails is
logged once (Python logging) and never reaches the trading loop.

One fact does not come from the journal: a request the exchange client retried
(:mod:`mlrisk.exchange` logs each failed attempt on the ``mlrisk.exchange`` logger, from whichever
thread made it); :class:`ExchangeErrors`, a logging handler, makes it a fact too.

:func:`watch` builds all of it from the settings (the bot's wiring calls it once).

Health (issue 19, item 3) plugs in through the journal too: a line
``log.event("health", signal=NAME, value=FLOAT, threshold=FLOAT, crossed=BOOL, action=TEXT)`` sets
the gauge ``mlrisk_health_value{signal=NAME}`` (and ``mlrisk_health_crossed``), and a change of
``crossed`` is a ``health`` fact (an alert). Nothing emits it yet, so the endpoint shows no health value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: a candle this many seconds late (the feed's "is late (N s)" warning) counts as a stalled feed
STALL_S = 60.0
_LATE = re.compile(r"^candle closing at (\S+) is late(?: \((-?[\d.]+) s(?:, local clock)?\))?")
_STREAM = re.compile(r"^(\S+): \S+ -> \S+, executed ([\d.]+)")


@dataclass(frozen=True)
class Fact:
    """One thing that happened, read from the journal. ``kind``: start, stop, fill, halt, resume, feed,
    stall, exchange_error, health; ``text``: one readable line built from journal fields (never a
    secret: the journal never receives settings); ``labels``: the metric labels (account, reason, ...)."""

    kind: str
    text: str
    labels: dict[str, str] = field(default_factory=dict)


class Sink(Protocol):
    """A consumer of the journal: every line (``record``), then each fact read from it (``fact``)."""

    def record(self, record: dict[str, Any]) -> None: ...

    def fact(self, fact: Fact) -> None: ...

    def close(self) -> None: ...


def reason_label(reason: str) -> str:
    """A halt reason's kind as a metric label: the words before the first colon, ``drawdown``,
    ``daily_loss``, ``liquidated``, ``position_mismatch`` (a bounded set: the numbers stay out)."""
    head = reason.split(":")[0].strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", head).strip("_")[:40] or "unknown"


class Facts:
    """Reads journal lines into facts; remembers what the last candle line said (the position, the
    halt) so a change is one fact. Units: quantities in the base asset, prices and P&L in the quote
    currency (USDT)."""

    def __init__(self) -> None:
        self.position: dict[str, Any] | None = None    # the simulated account's, at the last candle line
        self.exchange_position: str | None = None
        self.halted: str | None = None                 # the halt's kind while halted
        self.stalled: set[str] = set()                 # the closes already counted as a stall
        self.executed: dict[str, float] = {}           # exchange orders: the executed quantity last seen
        self.health: dict[str, bool] = {}

    def read(self, r: dict[str, Any]) -> list[Fact]:
        kind = r.get("event")
        if kind is None:
            return self._candle(r) if "open_ms" in r else []
        if kind == "start":
            return [Fact("start", f"started: {r.get('mode')} {r.get('market')} {r.get('symbol')} {r.get('interval')}, "
                                  f"model {str(r.get('model_md5'))[:8]}, {r.get('feed')} feed",
                         {"mode": str(r.get("mode")), "symbol": str(r.get("symbol"))})]
        if kind == "stop":
            eq = r.get("equity")
            return [Fact("stop", f"stopped: {r.get('reason')}" + ("" if eq is None else f"; equity {eq:.2f}"))]
        if kind in ("halted", "liquidated"):
            reason = str(r.get("reason") or r.get("message") or "")
            return self._halt(reason)
        if kind == "stream":  # an order's status changed between closes (the user data stream)
            message = str(r.get("message", ""))
            m = _STREAM.match(message)
            if m and self._executed_more(m.group(1), float(m.group(2))) or "liquidation fill" in message:
                return [Fact("fill", f"exchange order {message}", {"account": "exchange"})]
            return []
        if kind == "warning":
            return self._warning(str(r.get("message", "")))
        if kind == "health":
            return self._health(r)
        return []

    def _executed_more(self, client_order_id: str, executed: float) -> bool:
        """True when an exchange order's executed quantity grew (a fill), remembered per order."""
        before = self.executed.get(client_order_id, 0.0)
        self.executed[client_order_id] = max(before, executed)
        return executed > before

    def _halt(self, reason: str) -> list[Fact]:
        label = reason_label(reason)
        if self.halted == label:
            return []
        self.halted = label
        return [Fact("halt", f"HALTED ({reason})", {"reason": label})]

    def _candle(self, r: dict[str, Any]) -> list[Fact]:
        out: list[Fact] = []
        exchange = "exchange_orders" in r
        pos = r.get("position") or {}
        if not exchange and self.position is not None and pos.get("side") != "flat":
            before = self.position
            if before.get("side") != pos.get("side") or pos.get("entries", 0) > before.get("entries", 0):
                added = pos["qty"] - (before["qty"] if before.get("side") == pos.get("side") else 0.0)
                out.append(Fact("fill", f"{pos['side']} entry filled: {added:.6g} at the open of {r['time'][:16]}Z; "
                                        f"position {pos['qty']:.6g} @ {pos['entry_price']:.2f} (simulated)",
                                {"account": "simulated"}))
        self.position = pos
        for t in [] if exchange else r.get("trades", []):   # testnet/live: the exchange's fills say it
            out.append(Fact("fill", f"closed {t['side']} ({t['reason']}): {t['qty']:.6g} at {t['exit_price']:.2f}, "
                                    f"pnl {t['pnl']:+.2f} (simulated)",
                            {"account": "simulated"}))
        for o in r.get("exchange_orders", []):
            if o.get("status") == "rejected":
                out.append(Fact("exchange_error", f"order {o['client_order_id']} rejected: {o.get('reason', '')}",
                                {"kind": "rejected"}))
            elif self._executed_more(o["client_order_id"], float(o.get("executed_qty") or 0)):
                out.append(Fact("fill", f"exchange order {o['client_order_id']}: {o['side']} {o['executed_qty']} of "
                                        f"{o['quantity']} executed ({o['status']})", {"account": "exchange"}))
        if r.get("halted"):
            out.extend(self._halt(str(r.get("halt_reason", ""))))
        elif self.halted is not None:
            self.halted = None
            out.append(Fact("resume", "halt lifted: entries allowed again"))
        return out

    def _warning(self, message: str) -> list[Fact]:
        m = _LATE.match(message)
        if m:
            out = [Fact("feed", f"feed: {message}", {"reason": "late"})]
            if m.group(2) is not None and float(m.group(2)) >= STALL_S and m.group(1) not in self.stalled:
                self.stalled.add(m.group(1))
                out.append(Fact("stall", f"feed stalled: {message}"))
            return out
        if message.startswith("candle history not loaded"):
            return [Fact("feed", f"feed: {message}", {"reason": "history"}), Fact("stall", f"feed stalled: {message}")]
        if message.startswith("websocket:"):
            return [Fact("feed", f"feed: {message}", {"reason": "websocket"})]
        return []

    def _health(self, r: dict[str, Any]) -> list[Fact]:
        signal, crossed = str(r.get("signal")), bool(r.get("crossed"))
        if self.health.get(signal, False) == crossed:
            self.health[signal] = crossed
            return []
        self.health[signal] = crossed
        what = "crossed its threshold" if crossed else "back within its threshold"
        action = f"; action: {r['action']}" if crossed and r.get("action") else ""
        return [Fact("health", f"health {signal} {what}: {r.get('value')} (threshold {r.get('threshold')}){action}",
                     {"signal": signal})]


class Observer:
    """The journal's observer (``CandleLog.observers``): each line to every sink, then its facts.
    Never raises: a sink's first failure is logged (without the line), later ones are counted."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.facts = Facts()
        self.failures = 0
        self.stopped = False

    def __call__(self, record: dict[str, Any]) -> None:
        try:
            facts = self.facts.read(record)
        except Exception as e:  # a line this reader does not understand: the bot goes on
            self._failed("reading a journal line", e)
            return
        for s in self.sinks:
            self._do(s.record, record)
        for f in facts:
            self.fact(f)

    def fact(self, f: Fact) -> None:
        """Pass one fact to every sink (also from other threads: the sinks are thread-safe)."""
        if f.kind == "stop":
            self.stopped = True
        for s in self.sinks:
            self._do(s.fact, f)

    def _do(self, fn: Any, arg: Any) -> None:
        try:
            fn(arg)
        except Exception as e:
            self._failed(getattr(fn, "__qualname__", "a sink"), e)

    def _failed(self, what: str, e: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("metrics/alerts: %s failed (%s); the bot goes on, later failures are not logged", what,
                        type(e).__name__)

    def close(self, error: BaseException | None = None) -> None:
        """Stop the sinks (the alerts' queue is sent first, briefly). ``error``: why the bot is ending
        without a ``stop`` line (an exception), said in one last ``stop`` fact."""
        if not self.stopped:
            why = "unexpectedly" if error is None else f"with an error: {type(error).__name__}: " \
                                                      f"{' '.join(str(error).split())[:200]}"
            self.fact(Fact("stop", f"stopped {why}"))
        for s in self.sinks:
            self._close(s)

    def _close(self, s: Sink) -> None:
        try:
            s.close()
        except Exception as e:
            self._failed("closing a sink", e)


class ExchangeErrors(logging.Handler):
    """Each warning of the ``mlrisk.exchange`` logger (a failed request the client retries, a clock
    resync) as an ``exchange_error`` fact (label kind ``request``)."""

    def __init__(self, observer: Observer) -> None:
        super().__init__(logging.WARNING)
        self.observer = observer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.observer.fact(Fact("exchange_error", f"exchange: {record.getMessage()}", {"kind": "request"}))
        except Exception:  # never raise from logging
            pass


class Watching:
    """What :func:`watch` started: the observer on the journal and the exchange logger. ``close()`` it
    when the bot ends (after its ``stop`` line)."""

    def __init__(self, observer: Observer | None, handler: ExchangeErrors | None) -> None:
        self.observer, self.handler = observer, handler

    def close(self) -> None:
        if self.handler is not None:
            logging.getLogger("mlrisk.exchange").removeHandler(self.handler)
        if self.observer is not None:
            exc = sys.exc_info()[1]  # called from a finally: the exception ending the bot, if any
            self.observer.close(exc if isinstance(exc, Exception) else None)


def watch(settings: Any, journal: Any) -> Watching:
    """Start the metrics endpoint and the alerts that ``settings`` ask for (``metrics_port``,
    ``alert_urls``) and attach them to ``journal`` (a :class:`~mlrisk.live.journal.CandleLog`); one
    journal line each (``metrics``: where; ``alerts``: how many targets, never their URLs). Nothing
    when both are off. Raises :class:`~mlrisk.errors.SettingsError` (one line) when the port cannot be
    bound or a URL is not one apprise knows."""
    sinks: list[Sink] = []
    try:
        if settings.metrics_port is not None:
            from mlrisk.live.metrics import BotMetrics

            m = BotMetrics()
            host, port = m.serve(settings.metrics_host, settings.metrics_port)
            sinks.append(m)
            journal.event("metrics", url=f"http://{host if ':' not in host else f'[{host}]'}:{port}/metrics")
        if settings.alert_urls:
            from mlrisk.live.alerts import Alerter

            sinks.append(Alerter(settings.alert_urls, cooldown_s=settings.alert_cooldown_s,
                                 errors=settings.alert_errors))
            journal.event("alerts", targets=len(settings.alert_urls), cooldown_s=settings.alert_cooldown_s)
    except BaseException:
        for s in sinks:
            s.close()
        raise
    if not sinks:
        return Watching(None, None)
    observer = Observer(sinks)
    journal.observers.append(observer)
    handler = ExchangeErrors(observer)
    logging.getLogger("mlrisk.exchange").addHandler(handler)
    return Watching(observer, handler)
