"""The futures bot against Binance's documented behaviour (issue 17, items 5-7): the kline websocket's 2026
routed paths, algo orders that stay TRIGGERING or end REJECTED, futures error codes, paging and time windows,
a lagging positionRisk, and ``--check-venue``. Every test runs against the fakes on 127.0.0.1."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from websockets.sync.client import connect

from fake_binance import make_candles
from fake_kline_ws import FakeKlineWS
from mlrisk.live.feeds.websocket import stream_url
from mlrisk.live.settings import DEFAULT_WS_HOSTS


# ---------------------------------------------------------------------- websocket paths (item 7)
def _gets_kline(ws: FakeKlineWS, path: str, timeout: float = 0.3) -> bool:
    """Connect to ``path``, stream one closed candle: True when a message arrives within ``timeout`` s."""
    before = len(ws.paths)
    with connect(f"{ws.url}{path}", open_timeout=2) as conn:
        for _ in range(200):
            if len(ws.paths) > before:
                break
            time.sleep(0.005)
        ws.send_candle(make_candles(1)[0], partials=0)
        try:
            return bool(conn.recv(timeout=timeout))
        except TimeoutError:
            return False


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_the_default_futures_stream_uses_the_documented_market_path(mode):
    url = stream_url(DEFAULT_WS_HOSTS[(mode, "futures")], "BTCUSDT", "1h")
    u = urlparse(url)
    assert (u.scheme, u.netloc, u.path) == ("wss", "fstream.binance.com", "/market/ws/btcusdt@kline_1h")
    with FakeKlineWS(heartbeat_s=None, market="futures", legacy_paths=False) as ws:
        assert _gets_kline(ws, u.path)                                    # the routed path delivers
        assert not _gets_kline(ws, "/ws/btcusdt@kline_1h")                 # the retired one: silence, no error


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_the_default_spot_stream_uses_the_documented_raw_path(mode):
    u = urlparse(stream_url(DEFAULT_WS_HOSTS[(mode, "spot")], "BTCUSDT", "1h"))
    assert (u.scheme, u.netloc, u.path) == ("wss", "stream.binance.com:9443", "/ws/btcusdt@kline_1h")
    with FakeKlineWS(heartbeat_s=None, market="spot") as ws:
        assert _gets_kline(ws, u.path)
