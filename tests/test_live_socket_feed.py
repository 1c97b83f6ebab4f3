"""The kline websocket feed against a fake stream (tests/fake_kline_ws.py) and the fake exchange's REST
klines (tests/fake_exchange.py), both on 127.0.0.1, in real time with short delays: stream candles equal
REST candles and need no REST request; a stall, a dropped or refused connection fall back to REST
(one warning per episode) and the stream is used again once it recovers; updates of a forming candle
are never returned; a candle the stream skipped is fetched by REST; stop ends the thread promptly; and
the bot end to end with --websocket in paper mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pandas as pd
import pytest

from conftest import ROOT
from fake_binance import make_candles
from fake_exchange import FakeExchange
from fake_kline_ws import FakeKlineWS
from mlrisk.exchange import ExchangeClient
from mlrisk.live.feeds.polling import PollingFeed
from mlrisk.live.feeds.websocket import SocketFeed, kline_row, stream_url
from mlrisk.live.loop import Stopper
from mlrisk.settings import BinanceSettings
from conftest import wait_until

H = 3_600_000
START = 1_700_000_000_000 // H * H
ROWS = make_candles(40, start_ms=START, seed=5)


def close_of(i: int) -> int:
    return START + (i + 1) * H


def set_clock(fx: FakeExchange, ms: int) -> None:
    """Put the fake exchange's clock at ``ms`` now (it runs on from there in real time)."""
    fx.clock_skew_ms = ms - time.time_ns() // 1_000_000



class Env:
    def __init__(self, fx: FakeExchange, ws: FakeKlineWS, feed: SocketFeed, warnings: list[str], stop: Stopper) -> None:
        self.fx, self.ws, self.feed, self.warnings, self.stop = fx, ws, feed, warnings, stop

    def klines(self) -> int:
        return len(self.fx.kline_requests())

    def ws_warnings(self) -> list[str]:
        return [w for w in self.warnings if w.startswith("websocket:")]

    def move_clock(self, ms: int) -> None:
        set_clock(self.fx, ms)
        self.feed.server_now()  # the feed estimates the exchange's clock from the last measured offset

    def rest(self, i: int, n: int = 1) -> pd.DataFrame:
        self.feed.polling.server_now()  # REST drops the candle forming on the exchange's clock: read it now
        return self.feed.polling.klines.fetch("BTCUSDT", "1h", H, START + i * H, START + (i + n) * H)

    def streaming(self, after: float) -> bool:
        """Wait until the feed has received a stream message after ``after`` (time.monotonic())."""
        return wait_until(lambda: self.feed.last_message_s > after and self.feed.state == "connected")


@contextmanager
def setup(now_ms: int, poll_delay_s: float = 3.0, stall_s: float = 0.5) -> Iterator[Env]:
    with FakeExchange(candles={("BTCUSDT", "1h"): ROWS}) as fx, \
            FakeKlineWS("BTCUSDT", "1h", H, heartbeat_s=0.05, first_open_ms=START + 24 * H) as ws:
        set_clock(fx, now_ms)
        stop = Stopper(None)
        warnings: list[str] = []
        ex = ExchangeClient(BinanceSettings(base_url=fx.url), market="spot", max_retries=1, backoff_s=0.0,
                            sleep=lambda s: None)
        polling = PollingFeed(ex, "BTCUSDT", "1h", H, poll_delay_s=poll_delay_s, poll_retry_s=0.1, max_stale_s=60,
                              stop=stop, warn=warnings.append)
        feed = SocketFeed(polling, ws.url, stall_s=stall_s, backoff_s=0.05, max_backoff_s=0.2)
        try:
            feed.server_now()
            env = Env(fx, ws, feed, warnings, stop)
            assert env.streaming(0.0), feed.state
            yield env
        finally:
            feed.close()


def test_stream_candles_equal_rest_candles_and_need_no_rest_request():
    with setup(now_ms=close_of(24) - 150) as e:
        assert e.ws.paths == ["/ws/btcusdt@kline_1h"]
        n0 = e.klines()
        threading.Timer(0.2, e.ws.send_candle, [ROWS[24]]).start()   # partial updates, then the close
        got = e.feed.wait_for(START + 24 * H)
        assert e.klines() == n0 and e.feed.from_socket == 1 and e.feed.from_rest == 0  # no REST poll was needed
        rest = e.rest(24)
        pd.testing.assert_frame_equal(got, rest, check_exact=True)
        assert float(got["close"].iloc[0]) == float(ROWS[24][4]) and int(got["trades"].iloc[0]) == ROWS[24][8]
        # several closed candles waiting are returned together, still without REST
        e.move_clock(close_of(26) + 10)
        n1 = e.klines()
        e.ws.send_candle(ROWS[25], partials=0)
        e.ws.send_candle(ROWS[26], partials=0)
        assert wait_until(lambda: e.feed.buffered == [START + 25 * H, START + 26 * H])
        got = e.feed.wait_for(START + 25 * H)
        assert e.klines() == n1
        pd.testing.assert_frame_equal(got, e.rest(25, 2), check_exact=True)
        assert e.ws_warnings() == []


def test_unclosed_updates_are_never_returned():
    with setup(now_ms=close_of(24) - 100, poll_delay_s=0.4) as e:
        e.ws.send_candle(ROWS[24], partials=3, closed=False)       # only updates of the forming candle
        got = e.feed.wait_for(START + 24 * H)                       # from REST after the poll delay
        assert e.feed.from_socket == 0 and e.feed.from_rest == 1 and e.feed.buffered == []
        pd.testing.assert_frame_equal(got, e.rest(24), check_exact=True)
        assert float(got["high"].iloc[0]) == float(ROWS[24][2]) != float(ROWS[24][1])  # not the partial high


def test_a_stall_falls_back_to_polling_with_one_warning_and_the_recovered_stream_is_used_again():
    with setup(now_ms=close_of(24) - 100, poll_delay_s=0.3, stall_s=0.5) as e:
        e.ws.stall()
        e.ws.send_candle(ROWS[24])                                   # lost in the stall
        n0 = e.klines()
        got = e.feed.wait_for(START + 24 * H)
        assert e.klines() > n0 and e.feed.from_rest == 1
        pd.testing.assert_frame_equal(got, e.rest(24), check_exact=True)
        # the next candle in the same episode: REST again, no second warning
        e.move_clock(close_of(25) - 100)
        e.ws.send_candle(ROWS[25])
        got = e.feed.wait_for(START + 25 * H)
        pd.testing.assert_frame_equal(got, e.rest(25), check_exact=True)
        assert len(e.ws_warnings()) == 1 and "polling REST" in e.ws_warnings()[0]
        assert wait_until(lambda: len(e.ws.paths) >= 2)              # it reconnected after stall_s
        # the stream recovers: the next candle comes from it, without REST
        t = time.monotonic()
        e.ws.resume()
        assert e.streaming(t)
        e.feed.polling.poll_delay_ms = 3000
        e.move_clock(close_of(26) + 10)
        n1 = e.klines()
        e.ws.send_candle(ROWS[26])
        got = e.feed.wait_for(START + 26 * H)
        assert e.klines() == n1 and e.feed.from_socket == 1
        pd.testing.assert_frame_equal(got, e.rest(26), check_exact=True)
        # a new episode warns again
        e.ws.stall()
        e.feed.polling.poll_delay_ms = 300
        e.move_clock(close_of(27) - 50)
        e.feed.wait_for(START + 27 * H)
        assert len(e.ws_warnings()) == 2


def test_a_dropped_connection_reconnects_and_a_refused_one_falls_back_until_it_is_accepted():
    with setup(now_ms=close_of(24) - 100) as e:
        t = time.monotonic()
        e.ws.drop()
        assert wait_until(lambda: len(e.ws.paths) == 2) and e.streaming(t)
        e.move_clock(close_of(24) + 10)
        n0 = e.klines()
        e.ws.send_candle(ROWS[24])
        got = e.feed.wait_for(START + 24 * H)
        assert e.klines() == n0 and e.feed.connects == 2
        pd.testing.assert_frame_equal(got, e.rest(24), check_exact=True)
        # refused: REST gives the candle, the warning says why
        e.ws.refuse = True
        e.ws.drop()
        assert wait_until(lambda: "503" in e.feed.state), e.feed.state
        e.feed.polling.poll_delay_ms = 300
        e.move_clock(close_of(25) - 50)
        got = e.feed.wait_for(START + 25 * H)
        pd.testing.assert_frame_equal(got, e.rest(25), check_exact=True)
        assert len(e.ws_warnings()) == 1 and "503" in e.ws_warnings()[0]
        assert len(e.ws.paths) == 2                                   # refused handshakes are not accepted
        t = time.monotonic()
        e.ws.refuse = False
        assert e.streaming(t) and len(e.ws.paths) == 3
        e.feed.polling.poll_delay_ms = 3000
        e.move_clock(close_of(26) + 10)
        n1 = e.klines()
        e.ws.send_candle(ROWS[26])
        assert e.feed.wait_for(START + 26 * H) is not None and e.klines() == n1


def test_a_candle_the_stream_skipped_is_fetched_by_rest():
    with setup(now_ms=close_of(25) + 50) as e:
        e.ws.send_candle(ROWS[25])                                   # 24 was missed
        assert wait_until(lambda: e.feed.buffered == [START + 25 * H])
        n0 = e.klines()
        got = e.feed.wait_for(START + 24 * H)
        assert e.klines() > n0
        pd.testing.assert_frame_equal(got, e.rest(24, 2), check_exact=True)
        assert len(e.ws_warnings()) == 1 and "skipped" in e.ws_warnings()[0]


def test_stop_ends_the_thread_and_the_wait():
    for refused in (False, True):
        with setup(now_ms=close_of(24) - 5_000) as e:
            if refused:  # stopping while it backs off between refused connections
                e.ws.refuse = True
                e.ws.drop()
                assert wait_until(lambda: "503" in e.feed.state)
            done: list[Any] = []
            waiter = threading.Thread(target=lambda: done.append(e.feed.wait_for(START + 24 * H)))
            waiter.start()
            time.sleep(0.1)
            e.stop.request("test")
            # ignoring the stop, the wait would end ~8 s later with the candle from REST (done != [None])
            e.feed._thread.join(5.0)
            waiter.join(5.0)
            assert not e.feed._thread.is_alive() and not waiter.is_alive() and done == [None]


def test_kline_row_reads_only_closed_candles_of_the_symbol_and_interval():
    with FakeKlineWS("BTCUSDT", "1h", H) as ws:
        closed = json.loads(ws.event(ROWS[3], closed=True))
        forming = json.loads(ws.event(ROWS[3], closed=False))
    assert kline_row(closed, "BTCUSDT", "1h") == ROWS[3]
    assert kline_row({"stream": "btcusdt@kline_1h", "data": closed}, "BTCUSDT", "1h") == ROWS[3]
    assert kline_row(forming, "BTCUSDT", "1h") is None
    assert kline_row(closed, "ETHUSDT", "1h") is None and kline_row(closed, "BTCUSDT", "15m") is None
    assert kline_row({"result": None, "id": 1}, "BTCUSDT", "1h") is None
    assert stream_url("wss://fstream.binance.com/", "BTCUSDT", "15m") == "wss://fstream.binance.com/ws/btcusdt@kline_15m"


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_paper_bot_with_websocket_decides_from_stream_candles(tmp_path):
    from test_live_testnet_cli import _pinned_repo

    _pinned_repo(tmp_path)
    now = int(time.time() * 1000)
    first = now // H * H - 30 * H
    rows = make_candles(34, start_ms=first, price=40000.0)
    forming = first + 30 * H                                       # the candle forming when the bot starts
    log, kill = tmp_path / "bot.jsonl", tmp_path / "STOP"
    with FakeExchange(candles={("BTCUSDT", "1h"): rows}) as fx, FakeKlineWS("BTCUSDT", "1h", H, heartbeat_s=0.2,
                                                                          first_open_ms=forming) as ws:
        set_clock(fx, forming + H - 120_000)                       # two minutes before its close
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url}
        p = subprocess.Popen([sys.executable, "-m", "mlrisk.live", "--websocket", "--websocket-url", ws.url,
                              "--state-file", str(tmp_path / "s.sqlite"), "--log-file", str(log),
                              "--kill-switch-file", str(kill), "--poll-delay-s", "60", "--poll-retry-s", "0.5",
                              "--env-file", str(tmp_path / "none")],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def records() -> list[dict[str, Any]]:
                return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

            assert wait_until(lambda: any(r.get("event") == "start" for r in records()) or p.poll() is not None, 90)
            assert wait_until(lambda: ws.open_connections > 0 and len(fx.kline_requests()) > 0, 10)  # history loaded
            time.sleep(0.3)
            n0 = len(fx.kline_requests())
            for i in (30, 31):                                     # each closes; the stream says so at once
                set_clock(fx, first + (i + 1) * H + 20)
                ws.send_candle(rows[i])
                assert wait_until(lambda i=i: any(r.get("open_ms") == first + i * H for r in records()), 20), \
                    p.stderr.read() if p.poll() is not None else ""
            assert len(fx.kline_requests()) == n0                  # decided from stream candles, no REST poll
            kill.touch()
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0, err
    recs = records()
    candles = [r for r in recs if "event" not in r]
    assert [r["open_ms"] for r in candles] == [forming, forming + H]
    assert all(r["p_up"] is not None and r["p_up"] > 0.9 for r in candles)  # decisions made (paper, model says up)
    assert all(r["latency_ms"] >= 0 for r in candles)                # the latency is recorded (speed: bench/)
    assert recs[-1]["event"] == "stop" and "kill switch" in recs[-1]["reason"]
    assert ws.paths and all(path == "/ws/btcusdt@kline_1h" for path in ws.paths)


# ---------------------------------------------------------------------------------------- settings
def test_websocket_settings_defaults_hosts_and_checks(monkeypatch, tmp_path):
    from mlrisk.errors import SettingsError
    from mlrisk.live.settings import load_live_settings

    for k in list(os.environ):
        if k.startswith("MLRISK_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    s = load_live_settings(env_file=None)
    assert not s.websocket and s.websocket_stall_s == 30 and s.ws_url == "wss://stream.binance.com:9443"
    assert load_live_settings(env_file=None, market="futures", max_leverage=3).ws_url == "wss://fstream.binance.com/market"
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", "k" * 20)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", "s" * 20)
    assert load_live_settings(env_file=None, mode="testnet").ws_url == "wss://stream.testnet.binance.vision"
    monkeypatch.setenv("MLRISK_WEBSOCKET", "true")
    monkeypatch.setenv("MLRISK_WEBSOCKET_URL", "ws://127.0.0.1:9001/")
    s = load_live_settings(env_file=None)
    assert s.websocket and s.ws_url == "ws://127.0.0.1:9001"
    with pytest.raises(SettingsError, match=r"websocket_url \(MLRISK_WEBSOCKET_URL\): plain ws:// is allowed only"):
        load_live_settings(env_file=None, websocket_url="ws://stream.example.com")
    with pytest.raises(SettingsError, match="must be a websocket URL"):
        load_live_settings(env_file=None, websocket_url="https://stream.binance.com")
    monkeypatch.delenv("MLRISK_WEBSOCKET_URL")
    monkeypatch.setenv("MLRISK_BINANCE_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(SettingsError, match="set the stream host too"):
        load_live_settings(env_file=None)
    assert not load_live_settings(env_file=None, websocket=False).websocket  # polling only: no stream host needed
