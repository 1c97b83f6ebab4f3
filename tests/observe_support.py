"""A scripted paper run for the metrics and alerts tests: the bot's own loop (:func:`run_paper`) on
the fake exchange's candles, the journal watched as the app wires it (:func:`mlrisk.live.observe.watch`),
start and stop lines as the app writes them. The script: flat candles at 100, a stand-in model that
always says up (a long entry placed at the first close, filled at the next open), a 2 % drop at
candle 23 (-10 % equity at leverage 10 and half the equity per entry: a drawdown halt beyond 8 %),
then a stop after candle 25."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_binance import FakeBinance

from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.exchange import ExchangeClient
from mlrisk.live.feeds.polling import PollingFeed
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot, Stopper, run_paper
from mlrisk.live.observe import watch
from mlrisk.live.risk import RiskLimits
from mlrisk.live.settings import LiveSettings, load_live_settings
from mlrisk.live.state import StateStore
from mlrisk.settings import BinanceSettings

H = 3_600_000
START = 1_700_000_000_000 // H * H
FIRST = START + 20 * H          # the first candle decided (forming when the run starts)
DROP = START + 23 * H           # the candle that falls 2 %: the drawdown halt at its close
LAST = START + 25 * H           # the last candle decided, then stop
MD5 = "0123456789abcdef0123456789abcdef"


def _row(t: int, o: float, h: float, lo: float, c: float) -> list[Any]:
    return [t, f"{o:.2f}", f"{h:.2f}", f"{lo:.2f}", f"{c:.2f}", "10.0", t + H - 1, "1000.0", 10, "5.0", "500.0", "0"]


def rows() -> list[list[Any]]:
    out = []
    for i in range(30):
        t = START + i * H
        if t < DROP:
            out.append(_row(t, 100.0, 100.0, 100.0, 100.0))
        elif t == DROP:
            out.append(_row(t, 100.0, 100.0, 98.0, 98.0))
        else:
            out.append(_row(t, 98.0, 98.0, 98.0, 98.0))
    return out


def settings(**kw: Any) -> LiveSettings:
    """The bot's settings as the command line gives them (no .env file)."""
    return load_live_settings(env_file=None, **kw)


def scripted_run(tmp_path: Path, s: LiveSettings, before_close: Callable[[], None] | None = None,
                 fb_setup: Callable[[FakeBinance], None] | None = None) -> Path:
    """Run the script with ``s``'s metrics/alerts; ``before_close`` runs after the stop line, before
    the watchers close (to scrape the endpoint). Returns the journal's path."""
    prm = params_vector(BacktestParams(threshold=0.0, leverage=10.0, order_size=0.5, slippage_bps=0.0, fee_rate=0.0,
                                       sweep={}), H)
    journal = tmp_path / "bot.jsonl"
    with FakeBinance({("BTCUSDT", "1h"): rows()}, now_ms=FIRST + 5_000) as fb:
        if fb_setup is not None:
            fb_setup(fb)
        stop = Stopper(None)

        def sleep(sec: float) -> None:   # the fake exchange's clock moves with the bot's sleeps (no real wait)
            fb.now_ms += int(sec * 1000)

        ex = ExchangeClient(BinanceSettings(base_url=fb.url), market="futures", max_retries=1, backoff_s=0.0,
                            sleep=lambda _s: None)
        feed = PollingFeed(ex, "BTCUSDT", "1h", H, stop=stop, sleep=sleep, poll_delay_s=1.0, poll_retry_s=600.0,
                           max_stale_s=6000.0)
        log = CandleLog(journal, None)
        feed.warn = lambda m: log.event("warning", message=m)   # as the app wires it
        watching = watch(s, log)
        try:
            with StateStore(tmp_path / "state.sqlite", symbol="BTCUSDT", interval="1h", market="futures") as store:
                bot = Bot(lambda h: 0.9, 1, 1, prm, H, RiskLimits(0.0, 1.0, 0.08, 1200), store, log)
                log.event("start", mode="paper", symbol="BTCUSDT", interval="1h", model_md5=MD5, rev=None,
                          resume_after=bot.last_processed, market="futures", feed="polling")
                reason = run_paper(bot, feed, stop, lambda r: stop.request("kill switch file live/STOP exists")
                                   if r.open_ms >= LAST else None)
                log.event("stop", reason=reason, last_candle=bot.last_processed, equity=round(bot.state.last_equity, 2))
            if before_close is not None:
                before_close()
        finally:
            watching.close()
            log.close()
    return journal


def journal_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    """A local HTTP endpoint (127.0.0.1, a free port) that records every request it receives: the
    target of the alerts (apprise's ``json://``). ``status``: the answer (500 to make sends fail)."""

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status, self.delay_s = status, delay_s
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if rec.delay_s:
                    threading.Event().wait(rec.delay_s)
                rec.requests.append({"path": self.path, "body": json.loads(body or b"{}")})
                self.send_response(rec.status)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, token: str) -> str:
        return f"json://127.0.0.1:{self.port}/hooks/{token}"

    def messages(self) -> list[str]:
        return [r["body"].get("message", "") for r in self.requests]

    def __enter__(self) -> "Recorder":
        self.thread.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
