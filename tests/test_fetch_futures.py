"""data.market futures: the perpetual sample, funding history and mark-price klines from Binance
(through the real python-binance client against the fake on 127.0.0.1) and from the public dumps."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_stage
from fake_binance import FakeBinance, make_candles, make_funding, make_mark
from mlrisk.config.data import DataParams
from mlrisk.data import derivatives as dv
from mlrisk.data.preprocess import build_dataset
from mlrisk.data.sources import get_candles, get_derivatives, load_sample
from mlrisk.errors import DataError
from mlrisk.exchange import ExchangeClient
from mlrisk.io import read_parquet
from mlrisk.settings import BinanceSettings

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


# --------------------------------------------------------------------------- sample
@pytest.fixture(scope="module")
def sample():
    d = DataParams(market="futures")
    candles, q = get_candles(d)
    funding, mark, dq = get_derivatives(d, candles)
    return candles, q, funding, mark, dq


def test_the_futures_sample_is_the_perpetual_not_spot(sample):
    candles, q, funding, mark, dq = sample
    spot = load_sample("BTCUSDT", "1h")
    assert len(candles) == 17_544 and q["gaps"] == 0  # the perp traded through the 2023-03-24 spot halt
    halt = pd.Timestamp("2023-03-24T13:00Z")
    assert halt in set(candles["open_time"]) and halt not in set(spot["open_time"])
    both = candles.merge(spot, on="open_time", suffixes=("_perp", "_spot"))
    assert (both["close_perp"] != both["close_spot"]).mean() > 0.99
    assert list(candles.columns) == ["open_time", "open", "high", "low", "close", "volume"]  # OHLCV only


def test_the_futures_sample_funding_and_mark_match_the_shipped_readme(sample):
    candles, q, funding, mark, dq = sample
    assert len(funding) == 2193 and len(mark) == 17_544
    assert list(funding.columns) == dv.FUNDING_COLUMNS and list(mark.columns) == ["open_time", "open", "high", "low", "close"]
    assert str(funding["funding_time"].dtype) == "datetime64[ms, UTC]" and str(mark["open_time"].dtype) == "datetime64[ms, UTC]"
    # jitter: the raw time kept, the join key rounded down to the hour
    assert funding["funding_time_raw"].iloc[0] == pd.Timestamp(1663891200023, unit="ms", tz="UTC")
    assert funding["funding_time"].iloc[0] == pd.Timestamp("2022-09-23T00:00Z")
    assert (funding["funding_time"].astype("int64") % (8 * H) == 0).all()
    assert dq["funding"]["jittered"] == 724 and dq["funding"]["max_jitter_ms"] == 29
    ftx = funding.loc[funding["funding_rate"].idxmin()]
    assert ftx["funding_rate"] == -0.00119172 and ftx["funding_time"] == pd.Timestamp("2022-11-10T00:00Z")
    assert dq["funding"]["missing_settlements"] == 0 and dq["funding"]["interval_hours"] == 8
    assert dq["mark"]["gaps"] == 0 and dq["mark"]["candles_without_mark"] == 0


def test_the_futures_sample_ships_one_symbol_and_interval():
    with pytest.raises(DataError, match=r"ships only BTCUSDT 1h \(perp klines, mark price, funding\); got BTCUSDT 15m") as e:
        get_candles(DataParams(market="futures", interval="15m"))
    assert "\n" not in str(e.value)


def test_a_feature_the_perpetual_sample_lacks_is_a_one_line_error(sample):
    from mlrisk.config.features import FeatureParams
    from mlrisk.config.split import SplitParams

    fp = FeatureParams(names=["close_pct", "taker_buy_share"])
    with pytest.raises(DataError, match="taker_buy_share needs the taker_buy_base column.*pick features the data source has") as e:
        build_dataset(sample[0], fp, SplitParams(), "1h")
    assert "\n" not in str(e.value)


def test_the_sample_cut_applies_to_funding_and_mark():
    d = DataParams(market="futures", start="2023-01-01", end="2023-01-03")
    candles, _ = get_candles(d)
    funding, mark, dq = get_derivatives(d, candles)
    assert len(candles) == len(mark) == 48 and len(funding) == 6
    assert funding["funding_time"].iloc[0] == pd.Timestamp("2023-01-01T00:00Z")


# --------------------------------------------------------------------------- validation
def _funding(times, rates=None, hours=8):
    rates = rates if rates is not None else ["0.0001"] * len(times)
    return dv.funding_from_raw(times, rates, hours)


def test_missing_settlements_are_counted_not_filled():
    times = [T0 + i * 8 * H for i in (0, 1, 2, 5, 6)]
    df, q = dv.validate_funding(_funding(times))
    assert len(df) == 5 and q["gaps"] == 1 and q["missing_settlements"] == 2 and q["largest_gap_settlements"] == 2
    assert q["largest_gap_before"] == pd.Timestamp(T0 + 5 * 8 * H, unit="ms", tz="UTC").isoformat()
    assert q["off_schedule"] == 0


def test_a_settlement_off_the_schedule_is_counted():
    times = [T0, T0 + 8 * H, T0 + 12 * H, T0 + 16 * H]  # 12:00 is no 8-hourly settlement
    _, q = dv.validate_funding(_funding(times))
    assert q["off_schedule"] == 1 and q["first_off_schedule"] == pd.Timestamp(T0 + 12 * H, unit="ms", tz="UTC").isoformat()
    assert q["missing_settlements"] == 0


def test_an_interval_change_the_data_records_is_on_schedule():
    times = [T0, T0 + 8 * H, T0 + 16 * H, T0 + 20 * H, T0 + 24 * H, T0 + 28 * H]
    hours = [8, 8, 8, 4, 4, 4]
    _, q = dv.validate_funding(_funding(times, hours=hours))
    assert q["off_schedule"] == 0 and q["interval_changes"] == 1 and q["interval_hours"] == 4 and q["missing_settlements"] == 0
    _, q8 = dv.validate_funding(_funding(times, hours=8))  # the same times on an 8 h schedule: 20:00 and 04:00 off it
    assert q8["off_schedule"] == 2


def test_jitter_is_rounded_down_and_kept_raw_and_a_late_time_is_an_error():
    df, q = dv.validate_funding(_funding([T0 + 23, T0 + 8 * H + 4, T0 + 16 * H]))
    assert (df["funding_time"].astype("int64") == [T0, T0 + 8 * H, T0 + 16 * H]).all()
    assert (df["funding_time_raw"].astype("int64") == [T0 + 23, T0 + 8 * H + 4, T0 + 16 * H]).all()
    assert q["jittered"] == 2 and q["max_jitter_ms"] == 23
    with pytest.raises(DataError, match="300 s past the hour: not a Binance settlement time"):
        dv.validate_funding(_funding([T0, T0 + 8 * H + 300_000]))


def test_duplicates_are_dropped_and_a_conflict_is_an_error():
    df, q = dv.validate_funding(_funding([T0, T0, T0 + 8 * H]))
    assert len(df) == 2 and q["duplicates_dropped"] == 1
    with pytest.raises(DataError, match="two different funding settlements for 2024-01-01 00:00:00"):
        dv.validate_funding(_funding([T0, T0 + 5], ["0.0001", "0.0002"]))


def test_a_blank_rate_is_a_one_line_error():
    with pytest.raises(DataError, match=r"row 1: funding rate '' is not a number"):
        _funding([T0, T0 + 8 * H], ["0.0001", ""])


def test_a_missing_mark_candle_is_counted_not_filled():
    rows = make_mark(make_candles(10, start_ms=T0))
    del rows[4]
    from mlrisk.data.klines import klines_from_rows

    mark, q = dv.validate_mark(dv.to_mark(klines_from_rows(rows)), H)
    assert len(mark) == 9 and q["gaps"] == 1 and q["missing_candles"] == 1
    candles = klines_from_rows(make_candles(10, start_ms=T0))
    assert dv.mark_coverage(candles, mark) == 1


def test_loaders_read_what_the_stage_writes_and_name_a_stale_file(tmp_path: Path, sample):
    from mlrisk.io import write_parquet

    _, _, funding, mark, _ = sample
    write_parquet(dv.funding_path(tmp_path, "BTCUSDT"), funding)
    write_parquet(dv.mark_path(tmp_path, "BTCUSDT", "1h"), mark)
    pd.testing.assert_frame_equal(dv.load_funding(tmp_path / "BTCUSDT-funding.parquet"), funding)
    pd.testing.assert_frame_equal(dv.load_mark(tmp_path / "BTCUSDT-1h-mark.parquet"), mark)
    write_parquet(tmp_path / "old.parquet", funding.drop(columns=["interval_hours"]))
    with pytest.raises(DataError, match="lacks column.s. interval_hours"):
        dv.load_funding(tmp_path / "old.parquet")
    with pytest.raises(DataError, match="not found: run `dvc repro fetch` with data.market: futures"):
        dv.load_mark(tmp_path / "none.parquet")


# --------------------------------------------------------------------------- binance
def _exchange(fb: FakeBinance) -> ExchangeClient:
    return ExchangeClient(BinanceSettings(base_url=fb.url, timeout_s=5), sleep=lambda s: None, market="futures")


def _binance_params(**kw) -> DataParams:
    return DataParams(source="binance", market="futures", start="2024-01-01", **kw)


def test_funding_history_is_paged_by_start_time():
    rows = make_funding(2500, start_ms=T0, jitter_ms=7)
    with FakeBinance(funding={"BTCUSDT": rows}, now_ms=T0 + 2500 * 8 * H) as fb:
        df = dv.fetch_funding(_exchange(fb), "BTCUSDT", T0, None, 8)
    reqs = fb.requests_to("/fapi/v1/fundingRate")
    assert [q["limit"] for q in reqs] == ["1000"] * 3
    assert [int(q["startTime"]) for q in reqs] == [T0, rows[999]["fundingTime"] + 1, rows[1999]["fundingTime"] + 1]
    assert len(df) == 2500 and df["funding_time_raw"].is_unique
    assert df["funding_rate"].iloc[5] == float(rows[5]["fundingRate"]) and df["mark_price"].iloc[5] == float(rows[5]["markPrice"])
    assert df["funding_time_raw"].iloc[1] == pd.Timestamp(T0 + 8 * H + 7, unit="ms", tz="UTC")


def test_funding_interval_comes_from_funding_info_default_8h():
    with FakeBinance(funding_info=[{"symbol": "ETHUSDT", "fundingIntervalHours": 4}]) as fb:
        ex = _exchange(fb)
        assert dv.funding_interval_hours(ex, "ETHUSDT") == 4
        assert dv.funding_interval_hours(ex, "BTCUSDT") == 8  # not listed: not adjusted
    assert all(r.path == "/fapi/v1/fundingInfo" for r in fb.requests)


def _futures_fake(n_hours: int, now_ms: int, funding_hours: int = 8, info=None) -> FakeBinance:
    candles = make_candles(n_hours, start_ms=T0)
    funding = make_funding(n_hours // funding_hours + 1, start_ms=T0, interval_h=funding_hours, jitter_ms=3)
    return FakeBinance(futures={("BTCUSDT", "1h"): candles}, candles={("BTCUSDT", "1h"): candles}, funding={"BTCUSDT": funding},
                       mark={("BTCUSDT", "1h"): make_mark(candles)}, funding_info=info, now_ms=now_ms)


def test_binance_source_gets_perp_mark_and_funding_with_the_listed_interval():
    d = _binance_params()
    with _futures_fake(1200, now_ms=T0 + 1200 * H + 10, funding_hours=4,
                       info=[{"symbol": "BTCUSDT", "fundingIntervalHours": 4}]) as fb:
        ex = _exchange(fb)
        from mlrisk.data.sources import BinanceKlines

        candles, _ = get_candles(d, fetcher=BinanceKlines(ex, now_ms=lambda: fb.now_ms, progress=False))
        funding, mark, dq = get_derivatives(d, candles, exchange=ex, now_ms=lambda: fb.now_ms)
    assert len(candles) == len(mark) == 1200
    assert [int(q["startTime"]) for q in fb.requests_to("/fapi/v1/markPriceKlines")] == [T0, T0 + 1000 * H]
    assert len(funding) == 301 and (funding["interval_hours"] == 4).all()
    assert dq["funding"]["off_schedule"] == 0 and dq["funding"]["missing_settlements"] == 0
    assert dq["mark"]["candles_without_mark"] == 0
    assert mark["close"].iloc[0] == pytest.approx(candles["close"].iloc[0] * 1.0001, rel=1e-6)


def test_funding_listed_as_8h_but_served_4_hourly_is_counted_off_schedule():
    d = _binance_params()
    with _futures_fake(48, now_ms=T0 + 48 * H + 10, funding_hours=4) as fb:
        ex = _exchange(fb)
        from mlrisk.data.sources import BinanceKlines

        candles, _ = get_candles(d, fetcher=BinanceKlines(ex, now_ms=lambda: fb.now_ms, progress=False))
        _, _, dq = get_derivatives(d, candles, exchange=ex, now_ms=lambda: fb.now_ms)
    assert dq["funding"]["interval_hours"] == 8 and dq["funding"]["off_schedule"] == 6


def _stage_params(tmp_path: Path, **data) -> None:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update(data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))


def test_fetch_stage_on_binance_futures_writes_all_three_and_updates_incrementally(tmp_path: Path):
    _stage_params(tmp_path, source="binance", market="futures", start="2024-01-01")
    with _futures_fake(600, now_ms=T0 + 400 * H + 10) as fb:
        env = {"MLRISK_BINANCE_BASE_URL": fb.url}
        r = run_stage("fetch", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        f = dv.load_funding(tmp_path / "data/raw/BTCUSDT-funding.parquet")
        m = dv.load_mark(tmp_path / "data/raw/BTCUSDT-1h-mark.parquet")
        assert len(m) == 400 and len(f) == 51  # settlements at 0, 8 h, .. 400 h
        fb.now_ms = T0 + 560 * H + 10
        fb.requests.clear()
        r = run_stage("fetch", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert [int(q["startTime"]) for q in fb.requests_to("/fapi/v1/markPriceKlines")] == [T0 + 400 * H]
        last_raw = int(f["funding_time_raw"].iloc[-1].value // 1_000_000)
        assert [int(q["startTime"]) for q in fb.requests_to("/fapi/v1/fundingRate")] == [last_raw + 1]
    f = dv.load_funding(tmp_path / "data/raw/BTCUSDT-funding.parquet")
    assert len(dv.load_mark(tmp_path / "data/raw/BTCUSDT-1h-mark.parquet")) == 560 and len(f) == 71 and f["funding_time"].is_unique
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())
    assert q["market"] == "futures" and q["funding"]["rows"] == 71 and q["mark"]["rows"] == 560


# --------------------------------------------------------------------------- files
def _zip(path: Path, inner: str, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(inner, text)
    return str(path)


def _kline_csv(rows) -> str:
    return "".join(",".join(str(x) for x in r) + "\n" for r in rows)


def _dumps(root: Path, n: int = 48, funding_hours=(8,) * 6, symbol: str = "BTCUSDT") -> list[str]:
    candles = make_candles(n, start_ms=T0)
    t, lines = T0, ["calc_time,funding_interval_hours,last_funding_rate"]
    for i, hrs in enumerate(funding_hours):
        lines.append(f"{t + (11 if i % 2 else 0)},{hrs},0.00010000")
        t += hrs * H
    return [
        _zip(root / "klines" / "BTCUSDT-1h-2024-01.zip", "BTCUSDT-1h-2024-01.csv", _kline_csv(candles)),
        _zip(root / "markPriceKlines" / "BTCUSDT-1h-2024-01.zip", "BTCUSDT-1h-2024-01.csv", _kline_csv(make_mark(candles))),
        _zip(root / f"{symbol}-fundingRate-2024-01.zip", f"{symbol}-fundingRate-2024-01.csv", "\n".join(lines) + "\n"),
    ]


def test_file_source_sorts_dumps_by_kind_and_reads_the_dump_interval(tmp_path: Path):
    files = _dumps(tmp_path, funding_hours=(8, 8, 4, 4, 4, 4))
    assert [dv.dump_kind(f) for f in files] == ["klines", "mark", "funding"]
    d = DataParams(source="file", market="futures", files=files)
    candles, _ = get_candles(d)
    funding, mark, dq = get_derivatives(d, candles)
    assert len(candles) == len(mark) == 48 and (mark["close"] != candles["close"]).all()
    assert list(funding["interval_hours"]) == [8, 8, 4, 4, 4, 4]
    assert dq["funding"]["interval_changes"] == 1 and dq["funding"]["off_schedule"] == 0
    assert dq["funding"]["jittered"] == 3 and np.isnan(funding["mark_price"]).all()


def test_file_source_refuses_another_symbols_funding_dump_and_other_dump_kinds(tmp_path: Path):
    files = _dumps(tmp_path, symbol="ETHUSDT")
    d = DataParams(source="file", market="futures", files=files)
    with pytest.raises(DataError, match="the file name says ETHUSDT but data.symbol is BTCUSDT"):
        get_derivatives(d, get_candles(d)[0])
    with pytest.raises(DataError, match="is a 'premiumIndexKlines' dump, which fetch does not read"):
        dv.dump_kind("data/files/premiumIndexKlines/BTCUSDT-1h-2024-01.zip")


def test_funding_dumps_need_market_futures(tmp_path: Path):
    files = _dumps(tmp_path)
    with pytest.raises(DataError, match="is a funding dump, which only data.market 'futures' reads"):
        get_candles(DataParams(source="file", market="spot", files=[files[0], files[2]]))


def test_file_source_without_funding_dumps_has_none(tmp_path: Path):
    files = _dumps(tmp_path)[:1]
    d = DataParams(source="file", market="futures", files=files)
    funding, mark, dq = get_derivatives(d, get_candles(d)[0])
    assert funding is None and mark is None and dq == {"funding": None, "mark": None}


# --------------------------------------------------------------------------- stage
def test_fetch_stage_sample_futures_writes_beside_the_candles_and_spot_removes_them(tmp_path: Path):
    _stage_params(tmp_path, market="futures", start="2024-01-01")
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    raw = tmp_path / "data/raw"
    assert sorted(p.name for p in raw.iterdir()) == ["BTCUSDT-1h-mark.parquet", "BTCUSDT-1h-spot.parquet", "BTCUSDT-1h.parquet",
                                                     "BTCUSDT-funding.parquet"]
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())
    assert q["market"] == "futures" and q["funding"]["rows"] == 798 and q["mark"]["rows"] == 266 * 24
    assert "funding settlements every 8 h" in r.stdout
    # the spot companion: the shipped spot sample over the perp's window, its own candles, the basis counted
    spot = read_parquet(dv.spot_path(raw, "BTCUSDT", "1h"), "")
    perp = read_parquet(raw / "BTCUSDT-1h.parquet", "")
    shipped = load_sample("BTCUSDT", "1h")
    assert spot["open_time"].iloc[0] == perp["open_time"].iloc[0] == pd.Timestamp("2024-01-01T00:00Z")
    assert spot["open_time"].iloc[-1] == shipped["open_time"].iloc[-1] <= perp["open_time"].iloc[-1]
    same = shipped.set_index("open_time").loc[spot["open_time"], "close"].to_numpy()
    assert (spot["close"].to_numpy() == same).all() and (spot["close"].to_numpy() != perp["close"].to_numpy()[:len(spot)]).mean() > 0.99
    assert q["spot"]["rows"] == len(spot) and q["spot"]["gaps"] == 0 and q["spot"]["basis_candles"] == len(spot)
    both = perp.merge(spot, on="open_time", suffixes=("_p", "_s"))
    assert q["spot"]["median_basis_bps"] == pytest.approx(((both["close_p"] / both["close_s"] - 1) * 1e4).median(), abs=1e-3)
    assert -10 < q["spot"]["median_basis_bps"] < 0 and "spot candles, 0 gap(s)" in r.stdout
    _stage_params(tmp_path, market="spot", start="2024-01-01")
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in raw.iterdir()) == ["BTCUSDT-1h.parquet"]
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())
    assert not {"market", "funding", "mark", "spot"} & set(q)  # spot's report keeps its keys only


def test_the_whole_futures_sample_has_the_spot_halt_as_a_gap_and_the_issue_s_basis():
    from mlrisk.data.sources import get_spot

    d = DataParams(market="futures")
    spot, q = get_spot(d, get_candles(d)[0])
    assert q["gaps"] == 1 and q["largest_gap_before"] == "2023-03-24T14:00:00+00:00"  # the spot halt, kept, not filled
    assert q["median_basis_bps"] == pytest.approx(-3.8, abs=0.05)  # issue 18: closes a median -3.8 bps from spot


def test_fetch_stage_on_binance_futures_gets_spot_klines_from_the_spot_endpoint(tmp_path: Path):
    _stage_params(tmp_path, source="binance", market="futures", start="2024-01-01")
    perp = make_candles(60, start_ms=T0)
    spot = [[r[0], *(f"{float(x) * 1.001:.2f}" for x in r[1:5]), *r[5:]] for r in perp]  # spot 10 bps above the perp
    del spot[30]
    with FakeBinance(candles={("BTCUSDT", "1h"): spot}, futures={("BTCUSDT", "1h"): perp}, funding={"BTCUSDT": make_funding(8, start_ms=T0)},
                     mark={("BTCUSDT", "1h"): make_mark(perp)}, now_ms=T0 + 60 * H + 10) as fb:
        r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": fb.url})
        assert r.returncode == 0, r.stderr
        assert fb.requests_to("/api/v3/klines") and fb.requests_to("/fapi/v1/klines")
    s = read_parquet(dv.spot_path(tmp_path / "data/raw", "BTCUSDT", "1h"), "")
    assert len(s) == 59 and s["close"].iloc[0] == float(spot[0][4])
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())["spot"]
    assert q["rows"] == 59 and q["gaps"] == 1 and q["missing_candles"] == 1 and q["basis_candles"] == 59
    assert q["median_basis_bps"] == pytest.approx(-10, abs=0.2)


def test_a_perpetual_only_symbol_fetches_without_a_spot_companion_and_says_so(tmp_path: Path):
    _stage_params(tmp_path, source="binance", market="futures", start="2024-01-01")
    perp = make_candles(30, start_ms=T0)
    with FakeBinance(futures={("BTCUSDT", "1h"): perp}, funding={"BTCUSDT": make_funding(3, start_ms=T0)},
                     mark={("BTCUSDT", "1h"): make_mark(perp)}, now_ms=T0 + 30 * H + 10) as fb:  # spot: -1121
        r = run_stage("fetch", cwd=tmp_path, env={"MLRISK_BINANCE_BASE_URL": fb.url})
        assert fb.requests_to("/api/v3/klines")
    assert r.returncode == 0, r.stderr
    assert "no spot candles (Binance has no spot market BTCUSDT)" in r.stdout
    assert not dv.spot_path(tmp_path / "data/raw", "BTCUSDT", "1h").exists()
    assert json.loads((tmp_path / "reports/data_quality.json").read_text())["spot"] is None
    assert len(read_parquet(tmp_path / "data/raw/BTCUSDT-1h.parquet", "")) == 30


def test_file_source_reads_spot_dumps_from_a_spot_folder_and_says_when_there_are_none(tmp_path: Path):
    files = _dumps(tmp_path / "data/files")
    perp = make_candles(48, start_ms=T0)
    spot = [[r[0], *(f"{float(x) * 0.999:.2f}" for x in r[1:5]), *r[5:]] for r in perp]
    sp = _zip(tmp_path / "data/files/spot/BTCUSDT-1h-2024-01.zip", "BTCUSDT-1h-2024-01.csv", _kline_csv(spot))
    assert dv.dump_kind(sp) == "spot"
    rel = [str(Path(f).relative_to(tmp_path)) for f in [*files, sp]]
    _stage_params(tmp_path, source="file", market="futures", files=rel)
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(read_parquet(dv.spot_path(tmp_path / "data/raw", "BTCUSDT", "1h"), "")) == 48
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())
    assert q["spot"]["rows"] == 48 and q["spot"]["median_basis_bps"] == pytest.approx(10, abs=0.2)
    _stage_params(tmp_path, source="file", market="futures", files=rel[:-1])
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no spot candles (no spot kline dumps in a spot/ folder of data.files)" in r.stdout
    assert not dv.spot_path(tmp_path / "data/raw", "BTCUSDT", "1h").exists()
    assert json.loads((tmp_path / "reports/data_quality.json").read_text())["spot"] is None
    with pytest.raises(DataError, match="is a spot dump, which only data.market 'futures' reads"):
        get_candles(DataParams(source="file", market="spot", files=[files[0], sp]))


# --------------------------------------------------------------------------- contract
def test_the_fake_answers_have_the_documented_shape():
    from test_venue_contract import shape_drift

    docs = Path(__file__).parent / "binance_docs" / "market_data"
    candles = make_candles(3, start_ms=T0)
    with FakeBinance(futures={("BTCUSDT", "1h"): candles}, funding={"BTCUSDT": make_funding(3, start_ms=T0)},
                     mark={("BTCUSDT", "1h"): make_mark(candles)},
                     funding_info=[{"symbol": "BTCUSDT", "fundingIntervalHours": 4}], now_ms=T0 + 3 * H) as fb:
        c = _exchange(fb).client
        answers = {"futures_fundingRate": c.futures_funding_rate(symbol="BTCUSDT", startTime=T0),
                   "futures_fundingInfo": c.futures_v1_get_funding_info(),
                   "futures_markPriceKlines": c.futures_mark_price_klines(symbol="BTCUSDT", interval="1h", limit=3)}
    for name, got in answers.items():
        fixture = json.loads((docs / f"{name}.json").read_text())
        assert fixture["_source"] and f"{name}.json" in (docs / "SOURCES.md").read_text()
        drift = shape_drift(fixture["response"], got, fixture)
        assert not drift, f"{name}: {drift}"
    funding = json.loads((docs / "futures_fundingRate.json").read_text())
    retyped = [{**answers["futures_fundingRate"][0], "fundingRate": 0.0001}]  # a number where Binance sends a string
    assert shape_drift(funding["response"], retyped, funding)[0].startswith("[].fundingRate: documented string, got number")


# --------------------------------------------------------------------------- metrics (optional dumps)
METRICS_HEADER = ("create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
                  "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n")


def _metrics_zip(root: Path, day: str, times: list[str], symbol: str = "BTCUSDT", oi: str = "77082.018") -> str:
    rows = "".join(f"{t},{symbol},{oi},6000000000.5,1.2,1.5,{'' if i == 1 else '0.9'},1.1\n" for i, t in enumerate(times))
    return _zip(root / "metrics" / f"{symbol}-metrics-{day}.zip", f"{symbol}-metrics-{day}.csv", METRICS_HEADER + rows)


def test_metrics_dumps_are_read_validated_and_counted(tmp_path: Path):
    from mlrisk.data.sources import get_metrics

    files = _dumps(tmp_path)[:1]
    day1 = _metrics_zip(tmp_path, "2024-01-01", ["2024-01-01 00:00:00", "2024-01-01 00:05:00", "2024-01-01 00:20:00"])
    again = _metrics_zip(tmp_path / "b", "2024-01-01", ["2024-01-01 00:20:00"], oi="77100.5")  # a second row for 00:20
    assert dv.dump_kind(day1) == "metrics"
    df, q = get_metrics(DataParams(source="file", market="futures", files=[*files, day1, again]))
    assert list(df.columns) == dv.METRICS_COLUMNS and str(df["create_time"].dtype) == "datetime64[ms, UTC]"
    assert len(df) == 3 and df["sum_open_interest"].iloc[-1] == 77100.5  # the last row for a time is kept
    assert q["conflicting_rows_dropped"] == 1 and q["missing_rows"] == 2 and q["gaps"] == 1 and q["blank_cells"] == 1
    assert np.isnan(df["count_long_short_ratio"].iloc[1])
    eth = _metrics_zip(tmp_path / "c", "2024-01-01", ["2024-01-01 00:00:00"], symbol="ETHUSDT")
    with pytest.raises(DataError, match="the file name says ETHUSDT but data.symbol is BTCUSDT"):
        get_metrics(DataParams(source="file", market="futures", files=[*files, eth]))
    assert get_metrics(DataParams(source="file", market="futures", files=files)) == (None, None)


def test_fetch_stage_writes_metrics_beside_the_candles(tmp_path: Path):
    files = _dumps(tmp_path / "data/files")
    day = _metrics_zip(tmp_path / "data/files", "2024-01-01", ["2024-01-01 00:00:00", "2024-01-01 00:05:00"])
    rel = [str(Path(f).relative_to(tmp_path)) for f in [*files, day]]
    _stage_params(tmp_path, source="file", market="futures", files=rel)
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = dv.load_metrics(dv.metrics_path(tmp_path / "data/raw", "BTCUSDT"))
    assert len(m) == 2
    q = json.loads((tmp_path / "reports/data_quality.json").read_text())
    assert q["metrics"]["rows"] == 2 and q["funding"]["rows"] == 6 and q["mark"]["rows"] == 48
