"""A small Binance-compatible REST server on 127.0.0.1 for tests (reusable fixture).

Serves ``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines`` and
``/fapi/v1/klines`` from in-memory candles, with Binance's paging semantics (``startTime``,
``endTime`` inclusive, ``limit`` default 500, max 1000), its error format (``{"code", "msg"}``),
and injectable faults: ``"429"``/``"418"`` with ``Retry-After``, ``"500"``, and ``"drop"`` (the
connection closes with no response), ``"empty"`` (an empty page, ``[]``, where candles exist).
``futures`` serves other candles on ``/fapi`` than on ``/api`` (a market switch); gaps in the
exchange's data are simply rows left out of ``candles``. Every request is logged in ``requests``.
The live-trading work extends this with order endpoints.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

INTERVAL_MS = {"1m": 60_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def make_candles(n: int, start_ms: int = 1_700_000_000_000 // 3_600_000 * 3_600_000, interval_ms: int = 3_600_000,
                 seed: int = 0, price: float = 30_000.0) -> list[list[Any]]:
    """``n`` Binance kline rows (12 fields, prices as strings like Binance sends them)."""
    rng = np.random.default_rng(seed)
    rows = []
    close = price
    for i in range(n):
        o = close
        close = o * float(np.exp(rng.normal(0, 0.004)))
        h = max(o, close) * (1 + abs(rng.normal(0, 0.002)))
        lo = min(o, close) * (1 - abs(rng.normal(0, 0.002)))
        v = float(rng.uniform(100, 1000))
        t = start_ms + i * interval_ms
        rows.append([t, f"{o:.2f}", f"{h:.2f}", f"{lo:.2f}", f"{close:.2f}", f"{v:.5f}", t + interval_ms - 1,
                     f"{v * close:.4f}", int(v * 10), f"{v / 2:.5f}", f"{v * close / 2:.4f}", "0"])
    return rows


class FakeBinance:
    """Start with ``with FakeBinance(...) as fb:``; ``fb.url`` is the base URL for python-binance."""

    def __init__(self, candles: dict[tuple[str, str], list[list[Any]]] | None = None, now_ms: int | None = None,
                 futures: dict[tuple[str, str], list[list[Any]]] | None = None) -> None:
        self.candles = candles or {}
        self.futures = futures  # None: /fapi serves the same candles as /api
        self.now_ms = now_ms
        self.faults: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeBinance":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kline_requests(self) -> list[dict[str, str]]:
        return [q for p, q in self.requests if p.endswith("/klines")]

    def _klines(self, q: dict[str, str], futures: bool = False) -> tuple[int, Any]:
        key = (q.get("symbol", ""), q.get("interval", ""))
        candles = self.futures if futures and self.futures is not None else self.candles
        if key[0] not in {s for s, _ in candles}:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rows = candles.get(key)
        if rows is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = int(q.get("limit", 500))
        if limit > 1000:
            return 400, {"code": -1130, "msg": "Invalid limit."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        sel = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        if self.now_ms is not None:
            sel = [r for r in sel if r[0] <= self.now_ms]  # the forming candle is served, like Binance
        if start is None and end is not None:
            sel = sel[-limit:]
        return 200, sel[:limit]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                u = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(u.query).items()}
                with fake.lock:
                    fake.requests.append((u.path, q))
                    fault = fake.faults.pop(0) if fake.faults and u.path.endswith("/klines") else None
                if fault is not None:
                    kind = fault["kind"]
                    if kind == "drop":
                        self.close_connection = True
                        self.connection.close()
                        return
                    if kind == "empty":
                        self._send(200, [])
                        return
                    if kind in ("429", "418"):
                        self._send(int(kind), {"code": -1003, "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE."},
                                   {"Retry-After": str(fault.get("retry_after", 1))})
                        return
                    self._send(int(kind), {"code": -1001, "msg": "Internal error; unable to process your request."})
                    return
                if u.path in ("/api/v3/ping", "/fapi/v1/ping"):
                    self._send(200, {})
                elif u.path in ("/api/v3/time", "/fapi/v1/time"):
                    self._send(200, {"serverTime": fake.now_ms or 0})
                elif u.path in ("/api/v3/klines", "/fapi/v1/klines"):
                    self._send(*fake._klines(q, futures=u.path.startswith("/fapi")))
                else:
                    self._send(404, {"code": -1000, "msg": f"unknown path {u.path}"})

        return Handler
