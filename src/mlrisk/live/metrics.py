"""The bot's Prometheus metrics (``MLRISK_METRICS_PORT``; off by default): a sink of the journal's
observer (:mod:`mlrisk.live.observe`), so every value is one the bot logged, and an HTTP endpoint
(``/metrics``, prometheus_client's text format) on its own :class:`~prometheus_client.CollectorRegistry`
(never the process-wide one: nothing else leaks in, and two bots in one process do not collide).

Names follow Prometheus' conventions: the ``mlrisk_`` prefix, ``_total`` for counters, the unit in
the name (``_seconds``, ``_usdt``: the quote currency, USDT on Binance's USDT pairs and USDT-M
futures); quantities are in the base asset (BTC for BTCUSDT). ``account`` is ``simulated`` (the
backtest engine's account the bot steps every candle; the only one in paper mode) or ``exchange``
(the real account, testnet/live). The table of every metric is :data:`METRICS` (docs/operations.md).

Not exposed, because the journal does not carry them: the time from sending an order to the
exchange's acknowledgement (order ack latency), and health values until issue 19's model health
emits its ``health`` lines (:mod:`mlrisk.live.observe`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily

from mlrisk.errors import SettingsError
from mlrisk.live.observe import Fact
from mlrisk.times import INTERVAL_MS

#: every metric: (name, type, labels, meaning); the docs' table is this one
METRICS: list[tuple[str, str, str, str]] = [
    ("mlrisk_info", "gauge", "mode, market, symbol, interval, feed, model_md5", "1; the running bot's identity (from its start line)"),
    ("mlrisk_equity_usdt", "gauge", "account", "equity at the last close, open P&L included (USDT)"),
    ("mlrisk_position_quantity", "gauge", "account", "signed position at the last close, base asset (> 0 long, < 0 short)"),
    ("mlrisk_position_side", "gauge", "account", "1 long, -1 short, 0 flat"),
    ("mlrisk_realised_pnl_usdt", "gauge", "", "P&L of the simulated account's trades closed since this process started (USDT)"),
    ("mlrisk_trades_total", "counter", "side, reason", "trades the simulated account closed (reason: signal, take_profit, stop_loss, hold, liquidation, end)"),
    ("mlrisk_fills_total", "counter", "account", "fills: simulated entries and exits; exchange orders that executed"),
    ("mlrisk_orders_total", "counter", "account, status", "orders: simulated ones placed at a close (status placed); exchange ones by the status they had once sent"),
    ("mlrisk_risk_blocks_total", "counter", "", "orders the risk controls removed or closes they asked for"),
    ("mlrisk_halted", "gauge", "", "1 while entries are halted (a loss limit, a liquidation, a position mismatch), else 0"),
    ("mlrisk_halts_total", "counter", "reason", "halts, by kind: daily_loss, drawdown, liquidated, position_mismatch"),
    ("mlrisk_candles_total", "counter", "", "candles processed (decided, or stepped when catching up)"),
    ("mlrisk_last_candle_close_timestamp_seconds", "gauge", "", "close time of the last processed candle (Unix seconds)"),
    ("mlrisk_last_candle_age_seconds", "gauge", "", "seconds since that close, at the scrape (grows while the feed stalls)"),
    ("mlrisk_decision_latency_seconds", "histogram", "", "from the feed delivering a closed candle to its decision committed (and, testnet/live, its orders sent)"),
    ("mlrisk_close_to_decision_seconds", "histogram", "", "from the candle's close (this machine's clock) to its decision committed: the poll delay or the websocket's delivery included"),
    ("mlrisk_feed_websocket", "gauge", "", "1: candles from the kline websocket (REST polling as its fallback); 0: REST polling"),
    ("mlrisk_feed_warnings_total", "counter", "reason", "the feed's warnings: late (a candle not served yet), history (the history not loaded), websocket (a fallback to REST or a skipped candle)"),
    ("mlrisk_feed_stalls_total", "counter", "", "candles 60 s or more late, or a history that would not load"),
    ("mlrisk_exchange_errors_total", "counter", "kind", "request: a failed request the client retried; rejected: an order the exchange refused"),
    ("mlrisk_health_value", "gauge", "signal", "a model health signal's value (issue 19's health lines; none yet)"),
    ("mlrisk_health_crossed", "gauge", "signal", "1 while that signal is beyond its threshold"),
]
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CLOSE_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_SIDE = {"long": 1, "short": -1, "flat": 0}


class _CandleAge:
    """``mlrisk_last_candle_close_timestamp_seconds`` and ``mlrisk_last_candle_age_seconds`` at scrape time;
    no sample while the last close is unknown (never 0, the year 1970): known from the first candle line,
    or at start from the state file's last processed candle (``resume_after``)."""

    def __init__(self, metrics: "BotMetrics") -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ts = GaugeMetricFamily("mlrisk_last_candle_close_timestamp_seconds",
                               _doc("mlrisk_last_candle_close_timestamp_seconds"))
        g = GaugeMetricFamily("mlrisk_last_candle_age_seconds", _doc("mlrisk_last_candle_age_seconds"))
        if self.metrics.last_close_s is not None:
            ts.add_metric([], self.metrics.last_close_s)
            g.add_metric([], self.metrics.clock() - self.metrics.last_close_s)
        yield ts
        yield g


def _doc(name: str) -> str:
    return next(m[3] for m in METRICS if m[0] == name)


class BotMetrics:
    """The metrics (see the module docstring and :data:`METRICS`), updated from the journal's lines
    and facts (:class:`~mlrisk.live.observe.Sink`); :meth:`serve` starts the endpoint. ``clock``:
    Unix seconds (the close-to-decision latency and the candle age)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        disable_created_metrics()  # no *_created series: they double the page, and Prometheus' text format ignores them
        self.clock = clock
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.interval_ms: int | None = None
        self.last_close_s: float | None = None
        self.realised = 0.0
        self._server: Any = None

        def g(name: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, _doc(name), labels, registry=r)

        def c(name: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name.removesuffix("_total"), _doc(name), labels, registry=r)

        self.info = g("mlrisk_info", ("mode", "market", "symbol", "interval", "feed", "model_md5"))
        self.equity = g("mlrisk_equity_usdt", ("account",))
        self.position = g("mlrisk_position_quantity", ("account",))
        self.side = g("mlrisk_position_side", ("account",))
        self.pnl = g("mlrisk_realised_pnl_usdt")
        self.trades = c("mlrisk_trades_total", ("side", "reason"))
        self.fills = c("mlrisk_fills_total", ("account",))
        self.orders = c("mlrisk_orders_total", ("account", "status"))
        self.blocks = c("mlrisk_risk_blocks_total")
        self.halted = g("mlrisk_halted")
        self.halts = c("mlrisk_halts_total", ("reason",))
        self.candles = c("mlrisk_candles_total")
        r.register(_CandleAge(self))
        self.latency = Histogram("mlrisk_decision_latency_seconds", _doc("mlrisk_decision_latency_seconds"),
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.close_latency = Histogram("mlrisk_close_to_decision_seconds", _doc("mlrisk_close_to_decision_seconds"),
                                       buckets=_CLOSE_BUCKETS, registry=r)
        self.websocket = g("mlrisk_feed_websocket")
        self.feed_warnings = c("mlrisk_feed_warnings_total", ("reason",))
        self.stalls = c("mlrisk_feed_stalls_total")
        self.errors = c("mlrisk_exchange_errors_total", ("kind",))
        self.health = g("mlrisk_health_value", ("signal",))
        self.health_crossed = g("mlrisk_health_crossed", ("signal",))

    # ------------------------------------------------------------------ the journal's lines
    def record(self, r: dict[str, Any]) -> None:
        kind = r.get("event")
        if kind == "start":
            self.info.clear()
            self.info.labels(*(str(r.get(k)) for k in ("mode", "market", "symbol", "interval", "feed", "model_md5"))).set(1)
            self.interval_ms = INTERVAL_MS.get(str(r.get("interval")))
            self.websocket.set(1 if r.get("feed") == "websocket" else 0)
            resume = r.get("resume_after")  # the last processed candle's open (ms): its close is the last close
            if isinstance(resume, int) and self.interval_ms and self.last_close_s is None:
                self.last_close_s = (resume + self.interval_ms) / 1000
        elif kind == "health":
            signal = str(r.get("signal"))
            self.health.labels(signal).set(float(r["value"]))
            self.health_crossed.labels(signal).set(1 if r.get("crossed") else 0)
        elif kind is None and "open_ms" in r:
            self._candle(r)

    def _candle(self, r: dict[str, Any]) -> None:
        self.candles.inc()
        if self.interval_ms is not None:
            close_s = (r["open_ms"] + self.interval_ms) / 1000
            self.last_close_s = close_s
            if r.get("latency_ms") is not None:  # decided as it closed (not a catch-up)
                self.close_latency.observe(max(0.0, self.clock() - close_s))
        if r.get("latency_ms") is not None:
            self.latency.observe(r["latency_ms"] / 1000)
        self.equity.labels("simulated").set(r["equity"])
        pos = r["position"]
        self.side.labels("simulated").set(_SIDE[pos["side"]])
        self.position.labels("simulated").set(_SIDE[pos["side"]] * pos["qty"])
        if r.get("orders"):
            self.orders.labels("simulated", "placed").inc(len(r["orders"]))
        if r.get("blocked"):
            self.blocks.inc(len(r["blocked"]))
        for t in r.get("trades", []):
            self.trades.labels(t["side"], t["reason"]).inc()
            self.realised += t["pnl"]
        self.pnl.set(self.realised)
        for o in r.get("exchange_orders", []):
            self.orders.labels("exchange", o["status"]).inc()
        if r.get("exchange_position") is not None:
            q = float(r["exchange_position"])
            self.position.labels("exchange").set(q)
            self.side.labels("exchange").set((q > 0) - (q < 0))
        if r.get("account_equity") is not None:
            self.equity.labels("exchange").set(r["account_equity"])
        self.halted.set(1 if r.get("halted") else 0)

    # ------------------------------------------------------------------ facts
    def fact(self, f: Fact) -> None:
        if f.kind == "fill":
            self.fills.labels(f.labels.get("account", "simulated")).inc()
        elif f.kind == "halt":
            self.halts.labels(f.labels["reason"]).inc()
            self.halted.set(1)
        elif f.kind == "resume":
            self.halted.set(0)
        elif f.kind == "feed":
            self.feed_warnings.labels(f.labels["reason"]).inc()
        elif f.kind == "stall":
            self.stalls.inc()
        elif f.kind == "exchange_error":
            self.errors.labels(f.labels["kind"]).inc()

    # ------------------------------------------------------------------ the endpoint
    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host``:``port`` (0: a free port) in a daemon thread; returns the
        address bound. Raises :class:`~mlrisk.errors.SettingsError` when it cannot listen there."""
        from prometheus_client import start_wsgi_server

        try:
            server, _thread = start_wsgi_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise SettingsError(f"MLRISK_METRICS_PORT: cannot serve metrics on {host}:{port} "
                                f"({e.strerror or type(e).__name__}): choose another port or host") from None
        self._server = server
        return host, int(server.server_port)

    def text(self) -> str:
        """The endpoint's page (Prometheus' text format), without HTTP."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
