"""The Binance source, through the real python-binance client, against a fake server on 127.0.0.1."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_stage
from fake_binance import FakeBinance, make_candles, make_funding, make_mark
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
    p["data"].update({"source": "binance", "start": "2024-01-01", "market": "spot", **data})
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

    from mlrisk.io import write_parquet

    made_by = {"source": "binance", "symbol": "NOPEUSDT", "interval": "1h", "market": "spot", "gap_policy": "ffill", "max_fill": 24}
    write_parquet(out, klines_from_rows(make_candles(5, start_ms=T0, interval_ms=H)), metadata={"mlrisk": made_by})
    before = out.read_bytes()
    with _serve(10) as fb:
        r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": fb.url})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not know symbol" in r.stderr
    assert out.read_bytes() == before
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind


def test_an_empty_page_where_candles_exist_is_asked_again():
    with _serve(2500) as fb:
        f = _fetcher(fb, [])
        first = f._page("BTCUSDT", "1h", T0, T0 + 3000 * H)  # warm up: not a fault
        fb.faults = [{"kind": "empty"}]
        df = f.fetch("BTCUSDT", "1h", H, T0 + 1000 * H)
    assert len(first) == 1000
    assert len(df) == 1499 and df["open_time"].iloc[0] == pd.Timestamp(T0 + 1000 * H, unit="ms", tz="UTC")


def _stage(tmp_path: Path, fb: FakeBinance) -> tuple[int, str, pd.DataFrame | None]:
    r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": fb.url})
    out = tmp_path / "data/raw/BTCUSDT-1h.parquet"
    return r.returncode, r.stdout + r.stderr, pd.read_parquet(out) if out.exists() else None


def test_switching_market_starts_over_instead_of_appending(tmp_path: Path):
    spot = make_candles(600, start_ms=T0, interval_ms=H, price=40_000.0)
    futures = make_candles(800, start_ms=T0, interval_ms=H, seed=3, price=40_100.0)
    with FakeBinance({("BTCUSDT", "1h"): spot}, now_ms=T0 + 600 * H, futures={("BTCUSDT", "1h"): futures},
                     funding={"BTCUSDT": make_funding(101, start_ms=T0)}, mark={("BTCUSDT", "1h"): make_mark(futures)}) as fb:
        _params(tmp_path)
        rc, out, df = _stage(tmp_path, fb)
        assert rc == 0, out
        assert len(df) == 600
        fb.now_ms = T0 + 800 * H
        fb.requests.clear()
        _params(tmp_path, market="futures")
        rc, out, df = _stage(tmp_path, fb)
    assert rc == 0, out
    # the perp candles, then the spot companion (its own file, from data.start)
    assert [r.path for r in fb.requests if r.path.endswith("klines")] == ["/fapi/v1/klines", "/api/v3/klines"]
    assert int(fb.kline_requests()[0]["startTime"]) == T0  # from data.start, not after the spot candles
    assert len(df) == 800 and df["open_time"].is_unique
    np.testing.assert_allclose(df["close"].to_numpy(), [float(r[4]) for r in futures])


def test_a_file_made_by_the_sample_source_is_not_extended(tmp_path: Path):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update({"source": "sample", "start": "2024-09-01", "market": "spot"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    assert run_stage("fetch", cwd=tmp_path).returncode == 0  # the sample's last 3 weeks
    t0 = 1_725_148_800_000  # 2024-09-01
    rows = make_candles(24 * 40, start_ms=t0, interval_ms=H, price=50_000.0)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=t0 + 24 * 40 * H) as fb:
        _params(tmp_path, start="2024-09-01")
        rc, out, df = _stage(tmp_path, fb)
    assert rc == 0, out
    assert int(fb.kline_requests()[0]["startTime"]) == t0
    assert len(df) == 24 * 40
    np.testing.assert_allclose(df["close"].to_numpy(), [float(r[4]) for r in rows])  # no sample candle kept


def test_moving_start_later_and_end_earlier_cuts_the_file(tmp_path: Path):
    rows = make_candles(500, start_ms=T0, interval_ms=H)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=T0 + 100 * H) as fb:
        _params(tmp_path)
        assert _stage(tmp_path, fb)[0] == 0  # 2024-01-01 .. 2024-01-05
        fb.now_ms = T0 + 500 * H
        _params(tmp_path, start="2024-01-10")  # after the file's last candle
        rc, out, df = _stage(tmp_path, fb)
        assert rc == 0, out
        assert df["open_time"].iloc[0] == pd.Timestamp("2024-01-10", tz="UTC") and len(df) == 500 - 9 * 24
        _params(tmp_path, start="2024-01-12", end="2024-01-15")
        rc, out, df = _stage(tmp_path, fb)
    assert rc == 0, out
    assert df["open_time"].iloc[0] == pd.Timestamp("2024-01-12", tz="UTC")
    assert df["open_time"].iloc[-1] == pd.Timestamp("2024-01-14T23:00", tz="UTC") and len(df) == 3 * 24


def test_a_file_filled_under_another_gap_policy_is_downloaded_afresh(tmp_path: Path):
    from mlrisk.config.data import DataParams
    from mlrisk.data.sources import read_existing

    rows = make_candles(300, start_ms=T0, interval_ms=H)
    with FakeBinance({("BTCUSDT", "1h"): rows[:100] + rows[110:]}, now_ms=T0 + 300 * H) as fb:
        _params(tmp_path)
        assert _stage(tmp_path, fb)[0] == 0  # ffill: 10 flat candles in the file
    out = tmp_path / "data/raw/BTCUSDT-1h.parquet"
    same = DataParams(source="binance", start="2024-01-01")
    assert len(read_existing(out, same)) == 300
    assert read_existing(out, same.model_copy(update={"gap_policy": "keep"})) is None
    assert read_existing(out, same.model_copy(update={"max_fill": 5})) is None
    assert read_existing(out, same.model_copy(update={"market": "futures"})) is None


def test_a_long_gap_in_the_exchange_data_is_an_error_or_kept(tmp_path: Path):
    rows = make_candles(3000, start_ms=T0, interval_ms=H)
    rows = rows[:1200] + rows[2700:]  # the exchange has no candles for 1500 hours (a long halt)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=T0 + 3000 * H) as fb:
        _params(tmp_path)
        rc, out, df = _stage(tmp_path, fb)
        assert rc == 2 and "gap of 1500 missing candles" in out and "data.max_fill (24)" in out and out.count("\n") == 1
        assert df is None
        _params(tmp_path, gap_policy="keep")
        rc, out, df = _stage(tmp_path, fb)
    assert rc == 0, out
    assert len(df) == 1500 and "1 gap(s), 0 filled (0.00%)" in out
    q = yaml.safe_load((tmp_path / "reports/data_quality.json").read_text())
    assert q["largest_gap_candles"] == 1500 and q["filled_share"] == 0


def test_fetch_stage_names_a_damaged_existing_file(tmp_path: Path):
    _params(tmp_path)
    out = tmp_path / "data/raw/BTCUSDT-1h.parquet"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"not parquet")
    r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "unreadable" in r.stderr and "delete it" in r.stderr
    assert out.read_bytes() == b"not parquet"


def test_fetch_stage_downloads_the_other_symbols_too(tmp_path: Path):
    btc = make_candles(300, start_ms=T0, interval_ms=H, price=40_000.0)
    eth = make_candles(300, start_ms=T0, interval_ms=H, seed=5, price=2_000.0)
    with FakeBinance({("BTCUSDT", "1h"): btc, ("ETHUSDT", "1h"): eth}, now_ms=T0 + 300 * H) as fb:
        _params(tmp_path, others=["ETHUSDT"])
        rc, out, df = _stage(tmp_path, fb)
    assert rc == 0, out
    e = pd.read_parquet(tmp_path / "data/raw/ETHUSDT-1h.parquet")
    assert len(df) == len(e) == 300 and (e["open_time"] == df["open_time"]).all()
    np.testing.assert_allclose(e["close"].to_numpy(), [float(r[4]) for r in eth])
    q = yaml.safe_load((tmp_path / "reports/data_quality.json").read_text())
    assert q["others"]["ETHUSDT"]["rows"] == 300
