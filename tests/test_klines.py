import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config.data import DataParams
from mlrisk.errors import DataError
from mlrisk.data.sources import get_candles, load_sample, read_kline_file
from mlrisk.data.klines import validate

H = 3_600_000


def _csv_rows(df: pd.DataFrame, unit: str = "ms") -> str:
    mult = 1000 if unit == "us" else 1
    lines = []
    for r in df.itertuples():
        ot = int(r.open_time.value // 1_000_000) * mult
        ct = int(r.close_time.value // 1_000_000) * mult
        lines.append(f"{ot},{r.open},{r.high},{r.low},{r.close},{r.volume},{ct},{r.quote_volume},{r.trades},{r.taker_buy_base},{r.taker_buy_quote},0")
    return "\n".join(lines) + "\n"


def test_sample_is_the_real_btcusdt_1h_data():
    df = load_sample("BTCUSDT", "1h")
    assert len(df) == 17_518
    assert str(df["open_time"].dtype) == "datetime64[ms, UTC]"
    assert df["close"].dtype == np.float64
    assert df["open_time"].iloc[0] == pd.Timestamp("2022-09-23T07:00Z")
    clean, q = validate(df, H, "keep")
    assert q["gaps"] == 1 and q["missing_candles"] == 1
    assert q["largest_gap_before"].startswith("2023-03-24T14:00")


def test_sample_15m_has_ohlcv_only():
    df = load_sample("BTCUSDT", "15m")
    assert len(df) == 35_135 and "quote_volume" not in df.columns


def test_sample_unknown_symbol_is_a_clear_error():
    with pytest.raises(DataError, match="ships only"):
        load_sample("ETHUSDT", "1h")


@pytest.mark.parametrize("policy, rows, filled", [("keep", 17_518, 0), ("ffill", 17_519, 1)])
def test_gap_policies_on_the_real_halt(policy, rows, filled):
    df, q = get_candles(DataParams(gap_policy=policy))
    assert q["rows"] == rows == len(df) and q["filled_candles"] == filled
    if policy == "ffill":
        halt = df[df["open_time"] == pd.Timestamp("2023-03-24T13:00Z")].iloc[0]
        prev = df[df["open_time"] == pd.Timestamp("2023-03-24T12:00Z")].iloc[0]
        assert halt["volume"] == 0 and halt["open"] == halt["high"] == halt["low"] == halt["close"] == prev["close"]


def test_gap_policy_error_names_the_gap_and_the_fix():
    with pytest.raises(DataError, match="2023-03-24 13:00.*gap_policy"):
        get_candles(DataParams(gap_policy="error"))


def test_duplicates_are_dropped_and_counted():
    df = synthetic_candles(50)
    dup = pd.concat([df, df.iloc[[3, 10]]]).sample(frac=1, random_state=1)
    clean, q = validate(dup, H, "error")
    assert q["duplicates_dropped"] == 2 and len(clean) == 50
    assert clean["open_time"].is_monotonic_increasing


@pytest.mark.parametrize("col, value, words", [
    ("high", 0.5, "OHLC sanity"),
    ("close", np.nan, "missing values"),
    ("low", -1.0, "non-positive"),
])
def test_corrupt_candles_are_rejected(col, value, words):
    df = synthetic_candles(50)
    df.loc[7, col] = value
    with pytest.raises(DataError, match=words):
        validate(df, H, "keep")


def test_misaligned_times_are_rejected():
    df = synthetic_candles(50)
    with pytest.raises(DataError, match="grid"):
        validate(df, 4 * H, "keep")


@pytest.mark.parametrize("header, unit, zipped", [(False, "ms", False), (True, "ms", False), (False, "us", True)])
def test_binance_public_data_files(tmp_path: Path, header, unit, zipped):
    df = synthetic_candles(30)
    text = _csv_rows(df, unit)
    if header:
        text = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n" + text
    path = tmp_path / ("k.zip" if zipped else "k.csv")
    if zipped:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("BTCUSDT-1h-2024-01.csv", text)
    else:
        path.write_text(text)
    got = read_kline_file(path)
    assert (got["open_time"].to_numpy() == df["open_time"].to_numpy()).all()
    np.testing.assert_allclose(got["close"].to_numpy(), df["close"].to_numpy(), rtol=1e-12)


def test_file_source_joins_months_and_validates(tmp_path: Path):
    df = synthetic_candles(40)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(_csv_rows(df.iloc[:25]))
    b.write_text(_csv_rows(df.iloc[20:]))  # overlapping months: 5 duplicates
    out, q = get_candles(DataParams(source="file", files=[str(a), str(b)], gap_policy="error"))
    assert len(out) == 40 and q["duplicates_dropped"] == 5


@pytest.mark.parametrize("content, words", [("", "empty"), ("1,2,3\n", "columns"), ("abc,def\nx,y\n", "lacks column")])
def test_corrupt_file_is_a_clear_error(tmp_path: Path, content, words):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(DataError, match=words):
        read_kline_file(p)


def test_bad_zip_is_a_clear_error(tmp_path: Path):
    p = tmp_path / "bad.zip"
    p.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="corrupt"):
        read_kline_file(p)


# --------------------------------------------------------------------------- issue 9: data integrity
def _zip(path: Path, inner: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(inner, text)
    return path


def test_two_symbols_for_the_same_dates_are_an_error_naming_both_files_and_the_time(tmp_path: Path):
    btc = synthetic_candles(30, price=40_000.0)
    eth = synthetic_candles(30, seed=1, price=2_000.0)
    a, b = tmp_path / "btc.csv", tmp_path / "eth.csv"
    a.write_text(_csv_rows(btc))
    b.write_text(_csv_rows(eth))
    with pytest.raises(DataError, match=r"two different candles for open time 2024-01-01 00:00:00\+00:00: .*btc.csv line 1 and .*eth.csv line 1"):
        get_candles(DataParams(source="file", files=[str(a), str(b)]))


def test_conflicting_candles_are_an_error_not_silently_resolved():
    df = synthetic_candles(20)
    other = df.iloc[[5]].copy()
    other["close"] *= 1.01
    other["high"] *= 1.02
    with pytest.raises(DataError, match="two different candles for open time 2024-01-01 05:00"):
        validate(pd.concat([df, other]), H, "keep")


@pytest.mark.parametrize("name, inner", [
    ("ETHUSDT-1h-2024-01.csv", None),
    ("BTCUSDT-4h-2024-01-15.csv", None),
    ("download.zip", "ETHUSDT-1h-2024-01.csv"),
])
def test_a_dump_name_naming_another_symbol_or_interval_is_an_error(tmp_path: Path, name, inner):
    text = _csv_rows(synthetic_candles(10))
    p = _zip(tmp_path / name, inner, text) if inner else tmp_path / name
    if not inner:
        p.write_text(text)
    with pytest.raises(DataError, match=r"file name says (ETHUSDT 1h|BTCUSDT 4h) but data.symbol/data.interval are BTCUSDT 1h"):
        get_candles(DataParams(source="file", files=[str(p)]))
    assert read_kline_file(p)["close"].notna().all()  # the file itself is fine


def _two_months_apart(tmp_path: Path, missing: int) -> list[str]:
    df = synthetic_candles(100 + missing + 100)
    a, b = tmp_path / "BTCUSDT-1h-a.csv", tmp_path / "BTCUSDT-1h-b.csv"
    a.write_text(_csv_rows(df.iloc[:100]))
    b.write_text(_csv_rows(df.iloc[100 + missing:]))
    return [str(a), str(b)]


def test_ffill_refuses_a_gap_longer_than_max_fill_and_names_it(tmp_path: Path):
    files = _two_months_apart(tmp_path, 11_519)
    with pytest.raises(DataError, match=r"gap of 11519 missing candles between 2024-01-05 03:00:00\+00:00 and .* longer than data.max_fill \(24\)"):
        get_candles(DataParams(source="file", files=files))
    df, q = get_candles(DataParams(source="file", files=files, gap_policy="keep"))
    assert len(df) == 200 and q["gaps"] == 1 and q["missing_candles"] == 11_519 and q["filled_share"] == 0


def test_max_fill_is_configurable_and_the_filled_share_reported(tmp_path: Path):
    files = _two_months_apart(tmp_path, 30)
    with pytest.raises(DataError, match=r"longer than data.max_fill \(24\)"):
        get_candles(DataParams(source="file", files=files))
    df, q = get_candles(DataParams(source="file", files=files, max_fill=30))
    assert len(df) == 230 and q["filled_candles"] == 30 and q["filled_share"] == pytest.approx(30 / 230) and q["max_fill"] == 30
    assert DataParams(interval="15m").max_fill_candles == 96 and DataParams().max_fill_candles == 24


def test_ffill_never_makes_most_of_the_data_synthetic():
    df = synthetic_candles(400).iloc[::3]  # two of every three candles missing: every gap is short
    with pytest.raises(DataError, match=r"would make 400 candles from 134 real ones"):
        validate(df, H, "ffill")


def test_ffill_leaves_nan_fields_of_real_candles_alone():
    df = synthetic_candles(10).drop(index=[4])
    df["quote_volume"] = df["quote_volume"].astype("float64")
    df.loc[2, "quote_volume"] = np.nan  # a real candle without a quote volume
    out, q = validate(df, H, "ffill")
    assert q["filled_candles"] == 1
    assert np.isnan(out.loc[2, "quote_volume"])  # not zeroed
    assert out.loc[4, "quote_volume"] == 0 and out.loc[4, "volume"] == 0


def test_ms_and_us_rows_in_one_file_are_each_read_in_their_unit(tmp_path: Path):
    df = synthetic_candles(48, start="2024-12-31")  # 24 candles in 2024 (ms dumps), 24 in 2025 (µs dumps)
    p = tmp_path / "BTCUSDT-1h-joined.csv"
    p.write_text(_csv_rows(df.iloc[:24], "ms") + _csv_rows(df.iloc[24:], "us"))
    got, q = get_candles(DataParams(source="file", files=[str(p)], gap_policy="error"))
    assert (got["open_time"].to_numpy() == df["open_time"].to_numpy()).all()
    assert (got["close_time"].to_numpy() == df["close_time"].to_numpy()).all()
    assert q["last_candle"].startswith("2025-01-01T23:00")


def test_a_time_far_outside_any_sane_range_is_an_error_not_a_huge_grid(tmp_path: Path):
    df = synthetic_candles(10)
    p = tmp_path / "k.csv"
    lines = _csv_rows(df).splitlines()
    lines[6] = "1" + lines[6]  # ns-looking open time: 1e18
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"k.csv: column open_time, line 7: '1.*' is not a time between 1970 and 2100"):
        read_kline_file(p)


def _corrupt(kind: str, tmp_path: Path) -> Path:
    text = _csv_rows(synthetic_candles(10))
    lines = text.splitlines()
    fields = lines[4].split(",")
    if kind == "zlib":
        p = _zip(tmp_path / "BTCUSDT-1h-2024-01.zip", "BTCUSDT-1h-2024-01.csv", text * 20)
        raw = bytearray(p.read_bytes())
        for i in range(60, 120):  # inside the compressed data, not the headers
            raw[i] ^= 0xFF
        p.write_bytes(bytes(raw))
        return p
    if kind == "blank_open_time":
        fields[0] = ""
    elif kind == "blank_close_time":
        fields[6] = ""
    elif kind == "inf":
        fields[2] = "inf"
    elif kind == "trades":
        fields[8] = "many"
    if kind == "truncated":
        lines[-1] = lines[-1][:30]
    else:
        lines[4] = ",".join(fields)
    p = tmp_path / "k.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize("kind, words", [
    ("zlib", r"BTCUSDT-1h-2024-01.zip: cannot read \(zlib.error: .*corrupt"),
    ("blank_open_time", r"k.csv: column open_time, line 5: a blank cell is not an epoch timestamp"),
    ("blank_close_time", r"k.csv: column close_time, line 5 \(open time 2024-01-01 04:00:00\+00:00\): a blank cell is not an epoch timestamp"),
    ("inf", r"k.csv: column high, line 5 \(open time 2024-01-01 04:00:00\+00:00\): 'inf' is not a finite number"),
    ("trades", r"k.csv: column trades, line 5 \(open time 2024-01-01 04:00:00\+00:00\): 'many' is not a number"),
    ("truncated", r"k.csv: line 10 has 2 fields, the line before 12: the file is truncated"),
])
def test_damaged_files_are_one_clear_error_naming_the_file_and_line(tmp_path: Path, kind, words):
    p = _corrupt(kind, tmp_path)
    with pytest.raises(DataError, match=words):
        read_kline_file(p)


def test_inf_from_any_source_is_rejected_in_validation():
    df = synthetic_candles(10)
    df.loc[3, "close"] = np.inf
    with pytest.raises(DataError, match="non-finite price or volume in candle 2024-01-01 03:00"):
        validate(df, H, "keep")
