import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config import DataParams
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
