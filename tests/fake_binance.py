"""A small Binance-compatible REST server on 127.0.0.1 for tests (reusable fixture).

Serves ``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines`` and
``/fapi/v1/klines`` from in-memory candles, with Binance's paging semantics (``startTime``,
``endTime`` inclusive, ``limit`` default 500, max 1000) and its error format (``{"code", "msg"}``).

Faults: ``faults`` is a schedule, a list of dicts; each request takes the first fault whose
``"path"`` (a suffix; absent = any path) matches its path, and that fault is used up. Kinds:

- ``{"kind": "429"}`` (any HTTP status as a string: ``"418"``, ``"500"``, ``"400"``...): that status
  with a Binance error body (``"code"``/``"msg"`` override it) and a ``Retry-After`` header of
  ``"retry_after"`` seconds (default 1 for 418/429, none for others; ``None``: no header);
- ``{"kind": "drop"}``: the connection closes with no response;
- ``{"kind": "slow", "delay_s": 1.0}``: the normal answer, ``delay_s`` seconds late (a client with a
  shorter timeout sees ``requests.Timeout``);
- ``{"kind": "html"}``: HTTP 200 with a non-JSON body (``"body"``), like a captive portal;
- ``{"kind": "empty"}``: an empty page (``[]``) where candles exist.

``futures`` serves other candles on ``/fapi`` than on ``/api`` (a market switch); gaps in the
exchange's data are simply rows left out of ``candles``.

USDT-M futures market data (each route's comments cite the doc page it follows):
``/fapi/v1/fundingRate`` from ``funding`` (symbol -> rows as Binance sends them, see
:func:`make_funding`), ``/fapi/v1/markPriceKlines`` from ``mark`` ((symbol, interval) -> kline
rows, see :func:`make_mark`) and ``/fapi/v1/fundingInfo`` from ``funding_info`` (the adjusted
symbols only, as Binance lists them).

Every request is logged in ``requests`` as a :class:`Request` (method, path, query, headers).
The live-trading work extends this with order endpoints.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
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


def make_funding(n: int, start_ms: int = 1_704_067_200_000, interval_h: int = 8, seed: int = 0,
                 symbol: str = "BTCUSDT", jitter_ms: int = 0) -> list[dict[str, Any]]:
    """``n`` ``/fapi/v1/fundingRate`` rows: ``fundingRate`` and ``markPrice`` as strings,
    ``fundingTime`` an integer (ms, every ``interval_h`` hours; every other one ``jitter_ms`` late,
    as Binance's settlement times are)."""
    rng = np.random.default_rng(seed)
    return [{"symbol": symbol, "fundingTime": start_ms + i * interval_h * 3_600_000 + (jitter_ms if i % 2 else 0),
             "fundingRate": f"{rng.normal(0.0001, 0.0002):.8f}", "markPrice": f"{30_000 + rng.normal(0, 100):.8f}"}
            for i in range(n)]


def make_mark(candles: list[list[Any]]) -> list[list[Any]]:
    """Mark-price kline rows from kline rows: Binance's layout, OHLC slightly off the trade
    prices, "0" where the mark klines carry no volume (markPriceKlines doc: fields 5, 7, 9..11
    "ignore"; field 8 the count of basic data)."""
    out = []
    for r in candles:
        o, h, lo, c = (float(x) * 1.0001 for x in r[1:5])
        out.append([r[0], f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", "0", r[6], "0", 60, "0", "0", "0"])
    return out


class Request(NamedTuple):
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeBinance:
    """Start with ``with FakeBinance(...) as fb:``; ``fb.url`` is the base URL for python-binance."""

    def __init__(self, candles: dict[tuple[str, str], list[list[Any]]] | None = None, now_ms: int | None = None,
                 futures: dict[tuple[str, str], list[list[Any]]] | None = None,
                 funding: dict[str, list[dict[str, Any]]] | None = None,
                 mark: dict[tuple[str, str], list[list[Any]]] | None = None,
                 funding_info: list[dict[str, Any]] | None = None,
                 open_interest: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.candles = candles or {}
        self.futures = futures  # None: /fapi serves the same candles as /api
        self.funding = funding or {}
        self.mark_klines = mark or {}  # (symbol, interval) -> mark-price kline rows
        self.funding_info = funding_info or []
        self.open_interest = open_interest or {}  # symbol -> openInterestHist 5m rows (see _open_interest)
        self.now_ms = now_ms
        self.faults: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._stopping = threading.Event()  # releases "slow" answers at shutdown
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeBinance":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def kline_requests(self) -> list[dict[str, str]]:
        return [r.query for r in self.requests if r.path.endswith("/klines")]

    def _take_fault(self, path: str) -> dict[str, Any] | None:
        """Pop the first scheduled fault that applies to ``path`` (call under ``lock``)."""
        for i, fault in enumerate(self.faults):
            if path.endswith(fault.get("path", "")):
                return self.faults.pop(i)
        return None

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [r.query for r in self.requests if r.path == path]

    def _klines(self, q: dict[str, str], futures: bool = False, source: dict[tuple[str, str], list[list[Any]]] | None = None,
                max_limit: int = 1000) -> tuple[int, Any]:
        key = (q.get("symbol", ""), q.get("interval", ""))
        candles = source if source is not None else self.futures if futures and self.futures is not None else self.candles
        if key[0] not in {s for s, _ in candles}:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rows = candles.get(key)
        if rows is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = int(q.get("limit", 500))
        if limit > max_limit:
            return 400, {"code": -1130, "msg": "Invalid limit."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        sel = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
        if self.now_ms is not None:
            sel = [r for r in sel if r[0] <= self.now_ms]  # the forming candle is served, like Binance
        if start is None and end is not None:
            sel = sel[-limit:]
        return 200, sel[:limit]

    def _funding_rate(self, q: dict[str, str]) -> tuple[int, Any]:
        """``GET /fapi/v1/fundingRate`` as documented (developers.binance.com/docs/derivatives/
        usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History): ``limit`` default
        100, max 1000; neither ``startTime`` nor ``endTime``: the most recent 200 rows; more rows
        between them than ``limit``: the first ``limit`` from ``startTime``. Rows sorted by
        ``fundingTime`` (an integer), ``fundingRate``/``markPrice`` strings."""
        symbol = q.get("symbol", "")
        if symbol not in self.funding:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = int(q.get("limit", 100))
        if limit > 1000:  # the doc's maximum; the refusal has the klines route's form
            return 400, {"code": -1130, "msg": "Invalid limit."}
        rows = sorted(self.funding[symbol], key=lambda r: r["fundingTime"])
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if self.now_ms is not None:
            rows = [r for r in rows if r["fundingTime"] <= self.now_ms]  # a settlement not yet made is not history
        if start is None and end is None:
            return 200, rows[-200:]
        sel = [r for r in rows if (start is None or r["fundingTime"] >= start) and (end is None or r["fundingTime"] <= end)]
        return 200, sel[-limit:] if start is None else sel[:limit]

    def _open_interest(self, q: dict[str, str]) -> tuple[int, Any]:
        """``GET /futures/data/openInterestHist`` as documented (developers.binance.com/docs/derivatives/
        usds-margined-futures/market-data/rest-api/Open-Interest-Statistics): ``symbol`` and ``period``
        mandatory (served: 5m), ``limit`` default 30, max 500; neither ``startTime`` nor ``endTime``: the
        most recent rows; rows oldest first, ``sumOpenInterest``/``sumOpenInterestValue`` strings,
        ``timestamp`` ms. More rows between the times than ``limit``: the first ``limit`` from
        ``startTime`` (the doc does not say; the venue pages forward either way)."""
        symbol = q.get("symbol", "")
        if symbol not in self.open_interest:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if q.get("period") != "5m":
            return 400, {"code": -1102, "msg": "Mandatory parameter 'period' was not sent, was empty/null, or malformed."}
        limit = int(q.get("limit", 30))
        if limit > 500:
            return 400, {"code": -1130, "msg": "Invalid limit."}
        rows = sorted(self.open_interest[symbol], key=lambda r: int(r["timestamp"]))
        if self.now_ms is not None:
            rows = [r for r in rows if int(r["timestamp"]) <= self.now_ms]
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        sel = [r for r in rows if (start is None or int(r["timestamp"]) >= start) and (end is None or int(r["timestamp"]) <= end)]
        return 200, sel[:limit] if start is not None else sel[-limit:]

    def _route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        """The normal answer to GET ``path``: (HTTP status, JSON body)."""
        if path in ("/api/v3/ping", "/fapi/v1/ping"):
            return 200, {}
        if path in ("/api/v3/time", "/fapi/v1/time"):
            return 200, {"serverTime": self.now_ms or 0}
        if path in ("/api/v3/klines", "/fapi/v1/klines"):
            return self._klines(q, futures=path.startswith("/fapi"))
        if path == "/fapi/v1/markPriceKlines":
            # Mark-Price-Kline-Candlestick-Data doc: the kline layout and paging, limit default 500, max 1500
            return self._klines(q, source=self.mark_klines, max_limit=1500)
        if path == "/fapi/v1/fundingRate":
            return self._funding_rate(q)
        if path == "/futures/data/openInterestHist":
            return self._open_interest(q)
        if path == "/fapi/v1/fundingInfo":
            # Get-Funding-Rate-Info doc: only the symbols whose cap/floor/fundingIntervalHours Binance adjusted;
            # caps as strings, fundingIntervalHours an integer
            return 200, [{"adjustedFundingRateCap": "0.02000000", "adjustedFundingRateFloor": "-0.02000000",
                          "disclaimer": False, **row} for row in self.funding_info]
        return 404, {"code": -1000, "msg": f"unknown path {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: the handler writes the headers and the body in two sends; with Nagle's
            # algorithm the body waits for the client's delayed ACK, ~40 ms per answer on loopback
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                u = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(u.query).items()}
                with fake.lock:
                    fake.requests.append(Request("GET", u.path, q, dict(self.headers.items())))
                    fault = fake._take_fault(u.path)
                try:
                    if fault is not None and self._fault(fault):
                        return
                    self._send(*fake._route(u.path, q))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a "slow" fault)
                    self.close_connection = True

            def _fault(self, fault: dict[str, Any]) -> bool:
                """Act out ``fault``; False when the normal answer should follow (a late one)."""
                kind = fault["kind"]
                if kind == "drop":
                    self.close_connection = True
                    self.connection.close()
                elif kind == "slow":
                    fake._stopping.wait(fault.get("delay_s", 1.0))
                    return False
                elif kind == "html":
                    body = fault.get("body", "<html><body>Please log in to the hotel Wi-Fi</body></html>")
                    self._send(200, body.encode(), content_type="text/html")
                elif kind == "empty":
                    self._send(200, [])
                else:
                    status = int(kind)
                    default = (-1003, "Too many requests; current limit is 6000 request weight per 1 MINUTE.") if status in (418, 429) \
                        else (-1001, "Internal error; unable to process your request.")
                    retry_after = fault.get("retry_after", 1 if status in (418, 429) else None)  # None: no header
                    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                    self._send(status, {"code": fault.get("code", default[0]), "msg": fault.get("msg", default[1])}, headers)
                return True

        return Handler
