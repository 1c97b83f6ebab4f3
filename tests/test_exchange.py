"""mlrisk.exchange: the one Binance client, through the real python-binance client against the
fake exchange on 127.0.0.1. ``sleep`` is injected: no test waits out a backoff."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_stage
from fake_binance import FakeBinance, make_candles
from mlrisk.data.sources import BinanceKlines
from mlrisk.errors import ExchangeError
from mlrisk.exchange import ExchangeClient, ExchangeOutcomeUnknown, load_settings
from mlrisk.settings import BinanceSettings

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
KEY, SECRET = "test-key-123", "test-secret-456"
KLINES = {"symbol": "BTCUSDT", "interval": "1h", "startTime": T0, "limit": 1000}


def _serve(n: int = 50) -> FakeBinance:
    return FakeBinance({("BTCUSDT", "1h"): make_candles(n, start_ms=T0, interval_ms=H)}, now_ms=T0 + n * H)


def _exchange(fb: FakeBinance, sleeps: list[float] | None = None, max_retries: int = 3, **settings) -> ExchangeClient:
    s = BinanceSettings(**{"base_url": fb.url, "timeout_s": 5, **settings})
    return ExchangeClient(s, sleep=(sleeps if sleeps is not None else []).append, max_retries=max_retries)


def _has_key_header(r) -> bool:
    return any(k.lower() == "x-mbx-apikey" for k in r.headers)


# --------------------------------------------------------------------------- API key (issue 9 item 9)
def test_market_data_requests_carry_no_api_key_even_when_one_is_set():
    with _serve() as fb:
        ex = _exchange(fb, api_key=KEY, api_secret=SECRET)
        BinanceKlines(ex, progress=False).fetch("BTCUSDT", "1h", H, T0)  # server time, then klines
    assert {r.path for r in fb.requests} == {"/api/v3/time", "/api/v3/klines"}
    assert not any(_has_key_header(r) for r in fb.requests)
    assert not any(KEY in str(r) for r in fb.requests)


def test_fetch_stage_sends_no_api_key_from_the_environment(tmp_path: Path):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update({"source": "binance", "start": "2024-01-01", "market": "spot"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with _serve(30) as fb:
        env = {"MLRISK_BINANCE_BASE_URL": fb.url, "MLRISK_BINANCE_API_KEY": KEY, "MLRISK_BINANCE_API_SECRET": SECRET}
        r = run_stage("fetch", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert fb.kline_requests() and any(q.path == "/api/v3/time" for q in fb.requests)
    assert not any(_has_key_header(q) for q in fb.requests)


def test_signed_client_sends_the_key_and_a_timestamp_on_the_exchange_clock():
    with _serve() as fb:
        fb.now_ms = int(time.time() * 1000) + 3_600_000  # the exchange's clock runs an hour ahead of ours
        ex = ExchangeClient(BinanceSettings(base_url=fb.url, api_key=KEY, api_secret=SECRET), signed=True, sleep=[].append)
        assert ex.server_time_ms() == fb.now_ms
        assert abs(ex.offset_ms - 3_600_000) < 2_000 and ex.client.timestamp_offset == ex.offset_ms
        sent_at = int(time.time() * 1000) + 3_600_000
        with pytest.raises(ExchangeError, match="refused get_account: HTTP 404"):  # the fake has no account endpoint
            ex.call("get_account")
    account = fb.requests[-1]
    assert account.path == "/api/v3/account" and _has_key_header(account)
    assert abs(int(account.query["timestamp"]) - sent_at) < 2_000 and "signature" in account.query


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.7:8080/", "http://api.binance.com.evil.test"])
def test_plain_http_to_a_remote_host_is_refused_while_a_key_is_set(url: str):
    with pytest.raises(ExchangeError) as e:
        ExchangeClient(BinanceSettings(base_url=url, api_key=KEY))
    msg = str(e.value)
    assert "MLRISK_BINANCE_BASE_URL is plain http://" in msg and "use https://" in msg and "\n" not in msg
    assert KEY not in msg


@pytest.mark.parametrize("url,key", [("http://127.0.0.1:8765", KEY), ("http://127.3.2.1", KEY), ("http://localhost:1", KEY),
                                     ("http://[::1]:8765", KEY), ("https://example.com", KEY), ("http://example.com", None)])
def test_loopback_http_https_or_no_key_is_accepted(url: str, key: str | None):
    ex = ExchangeClient(BinanceSettings(base_url=url, api_key=key))
    assert ex.client.API_URL == url.rstrip("/") + "/api" and ex.client.FUTURES_URL == url.rstrip("/") + "/fapi"


def test_signed_client_needs_key_and_secret():
    with pytest.raises(ExchangeError, match="need MLRISK_BINANCE_API_KEY and MLRISK_BINANCE_API_SECRET"):
        ExchangeClient(BinanceSettings(api_key=KEY), signed=True)


def test_a_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLRISK_BINANCE_TIMEOUT_S", "-1")
    with pytest.raises(ExchangeError, match="^MLRISK_BINANCE_TIMEOUT_S: .*greater than 0"):
        load_settings()


# --------------------------------------------------------------------------- Retry-After cap (issue 9 item 10)
def test_418_ban_beyond_the_cap_fails_at_once_saying_for_how_long():
    with _serve() as fb:
        fb.faults = [{"kind": "418", "retry_after": 100_000}]
        sleeps: list[float] = []
        with pytest.raises(ExchangeError) as e:
            _exchange(fb, sleeps).call("get_klines", **KLINES)
    msg = str(e.value)
    assert "banned this IP (HTTP 418) for 100000 s (27.8 h)" in msg and "MLRISK_BINANCE_MAX_RETRY_AFTER_S=300" in msg
    assert sleeps == [] and len(fb.kline_requests()) == 1


def test_retry_after_cap_is_configurable():
    with _serve() as fb:
        fb.faults = [{"kind": "429", "retry_after": 20}]
        sleeps: list[float] = []
        with pytest.raises(ExchangeError, match=r"rate-limited this IP \(HTTP 429\) for 20 s"):
            _exchange(fb, sleeps, max_retry_after_s=10).call("get_klines", **KLINES)
        assert sleeps == []
        fb.faults = [{"kind": "429", "retry_after": 20}]
        assert len(_exchange(fb, sleeps, max_retry_after_s=30).call("get_klines", **KLINES)) == 50
        assert sleeps == [20.0]


def test_endless_rate_limit_gives_up_naming_it():
    with _serve() as fb:
        fb.faults = [{"kind": "429", "retry_after": 2}] * 5
        sleeps: list[float] = []
        with pytest.raises(ExchangeError, match=r"rate-limited this IP \(HTTP 429\) on all 3 attempts"):
            _exchange(fb, sleeps, max_retries=2).call("get_klines", **KLINES)
    assert sleeps == [2.0, 2.0]


# --------------------------------------------------------------------------- other faults
def test_non_json_200_says_so_instead_of_unreachable():
    with _serve() as fb:
        fb.faults = [{"kind": "html"}] * 5
        sleeps: list[float] = []
        with pytest.raises(ExchangeError) as e:
            _exchange(fb, sleeps, max_retries=2).call("get_klines", **KLINES)
    msg = str(e.value)
    assert msg.startswith("Binance answered HTTP 200 with a non-JSON body ('<html><body>Please log in")
    assert "captive portal" in msg and "unreachable" not in msg and "\n" not in msg
    assert sleeps == [0.5, 1.0]


def test_slow_answer_times_out_and_is_retried():
    with _serve() as fb:
        fb.faults = [{"kind": "slow", "delay_s": 5.0, "path": "/klines"}]
        sleeps: list[float] = []
        rows = _exchange(fb, sleeps, timeout_s=0.3).call("get_klines", **KLINES)
    assert len(rows) == 50 and sleeps == [0.5] and len(fb.kline_requests()) == 2


def test_server_errors_give_up_naming_them():
    with _serve() as fb:
        fb.faults = [{"kind": "503"}] * 5
        with pytest.raises(ExchangeError, match=r"HTTP 503 \(server error\) on all 2 attempts"):
            _exchange(fb, max_retries=1).call("get_klines", **KLINES)


def test_the_last_attempt_does_not_announce_a_retry(caplog: pytest.LogCaptureFixture):
    with _serve() as fb:
        fb.faults = [{"kind": "drop"}] * 5
        sleeps: list[float] = []
        with caplog.at_level(logging.WARNING, logger="mlrisk.exchange"), pytest.raises(ExchangeError, match="unreachable after 3 attempts"):
            _exchange(fb, sleeps, max_retries=2).call("get_klines", **KLINES)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == len(sleeps) == 2
    assert "attempt 3 of 3" in retries[-1]


def test_timestamp_rejection_re_measures_the_clock_and_retries_at_once():
    with _serve() as fb:
        fb.faults = [{"kind": "400", "code": -1021, "msg": "Timestamp for this request is outside of the recvWindow.", "path": "/klines"}]
        sleeps: list[float] = []
        ex = _exchange(fb, sleeps)
        assert len(ex.call("get_klines", **KLINES)) == 50
    assert [r.path for r in fb.requests] == ["/api/v3/klines", "/api/v3/time", "/api/v3/klines"]
    assert sleeps == [] and ex.client.timestamp_offset == ex.offset_ms != 0


def test_call_takes_a_method_name_or_a_callable():
    with _serve() as fb:
        ex = _exchange(fb)
        assert ex.call("get_server_time") == {"serverTime": fb.now_ms}
        assert ex.call(ex.client.futures_time) == {"serverTime": fb.now_ms}
    assert [r.path for r in fb.requests] == ["/api/v3/time", "/fapi/v1/time"]


# --------------------------------------------------------------------------- calls that must not be resent
@pytest.mark.parametrize("fault", [{"kind": "slow", "delay_s": 5.0}, {"kind": "drop"}, {"kind": "500"}, {"kind": "html"}])
def test_non_idempotent_call_is_sent_once_and_its_outcome_unknown(fault: dict):
    with _serve() as fb:
        fb.faults = [fault]
        sleeps: list[float] = []
        with pytest.raises(ExchangeOutcomeUnknown, match="outcome is unknown; query it before sending anything again"):
            _exchange(fb, sleeps, timeout_s=0.3).call("get_klines", idempotent=False, **KLINES)
    assert len(fb.requests) == 1 and sleeps == []


def test_non_idempotent_call_refused_by_a_rate_limit_was_not_executed():
    with _serve() as fb:
        fb.faults = [{"kind": "429", "retry_after": 1}]
        sleeps: list[float] = []
        with pytest.raises(ExchangeError, match="it was not executed") as e:
            _exchange(fb, sleeps).call("get_klines", idempotent=False, **KLINES)
    assert not isinstance(e.value, ExchangeOutcomeUnknown)
    assert len(fb.requests) == 1 and sleeps == []
