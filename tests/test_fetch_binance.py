"""The Binance source, through the real python-binance client, against a fake server on 127.0.0.1."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_stage
from fake_binance import FakeBinance, make_candles
from mlrisk.errors import ExchangeError
from mlrisk.data.sources import BinanceKlines, fetch_binance_incremental
from mlrisk.exchange import ExchangeClient
from mlrisk.settings import BinanceSettings

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


def _fetcher(fb: FakeBinance, sleeps: list[float], max_retries: int = 4) -> BinanceKlines:
    exchange = ExchangeClient(BinanceSettings(base_url=fb.url, timeout_s=5), sleep=sleeps.append, max_retries=max_retries)
    return BinanceKlines(exchange, now_ms=lambda: fb.now_ms, progress=False)


def _serve(n: int, forming: bool = True) -> FakeBinance:
    rows = make_candles(n, start_ms=T0, interval_ms=H)
    # the last served candle is still forming: 'now' is half way through it
    now = T0 + (n - 1) * H + H // 2 if forming else T0 + n * H
    return FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=now)


def test_pages_through_the_1000_limit_and_drops_the_forming_candle():
    with _serve(2501) as fb:
        sleeps: list[float] = []
        df = _fetcher(fb, sleeps).fetch("BTCUSDT", "1h", H, T0)
    assert len(df) == 2500  # 2501 served, the last one still forming
    assert df["open_time"].is_monotonic_increasing and df["open_time"].is_unique
    assert df["open_time"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    reqs = fb.kline_requests()
    assert len(reqs) == 3 and all(q["limit"] == "1000" for q in reqs)
    assert [int(q["startTime"]) for q in reqs] == [T0, T0 + 1000 * H, T0 + 2000 * H]
    assert sleeps == []


def test_incremental_update_asks_only_for_new_candles():
    with _serve(1500) as fb:
        f = _fetcher(fb, [])
        first = f.fetch("BTCUSDT", "1h", H, T0, T0 + 1200 * H)
        assert len(first) == 1200
        fb.requests.clear()
        out = fetch_binance_incremental(f, "BTCUSDT", "1h", H, T0, None, first)
    reqs = fb.kline_requests()
    assert len(reqs) == 1 and int(reqs[0]["startTime"]) == T0 + 1200 * H
    assert len(out) == 1499 and out["open_time"].is_unique
    pd.testing.assert_frame_equal(out.iloc[:1200].reset_index(drop=True), first)


def test_429_waits_retry_after_then_succeeds():
    with _serve(300) as fb:
        fb.faults = [{"kind": "429", "retry_after": 7}, {"kind": "418", "retry_after": 3}]
        sleeps: list[float] = []
        df = _fetcher(fb, sleeps).fetch("BTCUSDT", "1h", H, T0)
    assert sleeps == [7.0, 3.0]
    assert len(df) == 299


def test_dropped_connection_and_500_are_retried_with_backoff():
    with _serve(300) as fb:
        fb.faults = [{"kind": "drop"}, {"kind": "500"}, {"kind": "drop"}]
        sleeps: list[float] = []
        df = _fetcher(fb, sleeps).fetch("BTCUSDT", "1h", H, T0)
    assert len(df) == 299
    assert sleeps == [0.5, 1.0, 2.0]  # exponential backoff


def test_gives_up_after_max_retries_with_a_clear_error():
    with _serve(300) as fb:
        fb.faults = [{"kind": "drop"}] * 10
        with pytest.raises(ExchangeError, match="unreachable after 3 attempts"):
            _fetcher(fb, [], max_retries=2).fetch("BTCUSDT", "1h", H, T0)


def test_unknown_symbol_is_a_clear_error():
    with _serve(10) as fb:
        with pytest.raises(ExchangeError, match="does not know symbol 'NOPEUSDT'"):
            _fetcher(fb, []).fetch("NOPEUSDT", "1h", H, T0)


def test_futures_klines_use_the_futures_endpoint():
    with _serve(20) as fb:
        exchange = ExchangeClient(BinanceSettings(base_url=fb.url), market="futures")
        df = BinanceKlines(exchange, now_ms=lambda: fb.now_ms, progress=False).fetch("BTCUSDT", "1h", H, T0)
    assert len(df) == 19
    assert all(r.path == "/fapi/v1/klines" for r in fb.requests)


def _params(tmp_path: Path, **data) -> None:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update({"source": "binance", "start": "2024-01-01", **data})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))


def test_fetch_stage_downloads_then_updates_incrementally(tmp_path: Path):
    _params(tmp_path)
    rows = make_candles(1500, start_ms=T0, interval_ms=H)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=T0 + 1000 * H + 10) as fb:
        env = {"MLRISK_BINANCE_BASE_URL": fb.url}
        r = run_stage("fetch", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        out = tmp_path / "data/raw/BTCUSDT-1h.parquet"
        assert len(pd.read_parquet(out)) == 1000
        fb.now_ms = T0 + 1400 * H + 10
        fb.requests.clear()
        r = run_stage("fetch", cwd=tmp_path, env={**env})
        assert r.returncode == 0, r.stderr
        df = pd.read_parquet(out)
        assert len(df) == 1400 and df["open_time"].is_unique
        assert [int(q["startTime"]) for q in fb.kline_requests()] == [T0 + 1000 * H]
        q = yaml.safe_load((tmp_path / "reports/data_quality.json").read_text())
        assert q["rows"] == 1400 and q["gaps"] == 0


def test_fetch_stage_error_keeps_the_existing_file(tmp_path: Path):
    _params(tmp_path, symbol="NOPEUSDT")
    out = tmp_path / "data/raw/NOPEUSDT-1h.parquet"
    out.parent.mkdir(parents=True)
    from mlrisk.data.klines import klines_from_rows

    klines_from_rows(make_candles(5, start_ms=T0, interval_ms=H)).to_parquet(out)
    before = out.read_bytes()
    with _serve(10) as fb:
        r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": fb.url})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not know symbol" in r.stderr
    assert out.read_bytes() == before
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind


def test_fetch_stage_names_a_damaged_existing_file(tmp_path: Path):
    _params(tmp_path)
    out = tmp_path / "data/raw/BTCUSDT-1h.parquet"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"not parquet")
    r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "unreadable" in r.stderr and "delete it" in r.stderr
    assert out.read_bytes() == b"not parquet"
