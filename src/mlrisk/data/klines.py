"""The kline (candlestick) table: schema, parsing, validation and gap handling.

A kline table has one row per candle, sorted by ``open_time`` (UTC, ``datetime64[ms, UTC]``),
prices and volumes as float64, and the columns of Binance's ``/api/v3/klines`` that the
source has (see :data:`KLINE_COLUMNS`; ``ignore`` is dropped). A candle covers
``[open_time, open_time + interval)``; its close is known at ``close_time``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from mlrisk.errors import DataError
from mlrisk.times import candles_per_day

KLINE_COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume",
    "close_time", "quote_volume", "trades", "taker_buy_base", "taker_buy_quote",
]
CANDLE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]  # required in every source
FLOAT_COLUMNS = ["open", "high", "low", "close", "volume", "quote_volume", "taker_buy_base", "taker_buy_quote"]
TIME_COLUMNS = ["open_time", "close_time"]


def klines_from_rows(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Build a kline table from Binance API rows (lists of 12 fields, timestamps in ms)."""
    if len(rows) == 0:
        return empty_klines()
    arr = [list(r[:11]) for r in rows]
    df = pd.DataFrame(arr, columns=KLINE_COLUMNS)
    return normalise(df, time_unit="ms")


def empty_klines() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in KLINE_COLUMNS})
    return normalise(df, time_unit="ms")


US_THRESHOLD = 10**14  # epoch values at or above this are microseconds (ms reach it only in year 5138)
LATEST_MS = 4_102_444_800_000  # 2100-01-01: a later time is a misread value, not a candle
FILL_GRID_FACTOR = 2  # ffill may at most double the rows read (half the table synthetic)


def _epoch_ms(num: pd.Series, time_unit: str | None) -> np.ndarray:
    """Epoch values to milliseconds, the unit judged per row unless ``time_unit`` is given.

    Binance's spot dumps switched from ms to µs on 2025-01-01, so a file joined from both holds
    both; the ranges (ms ~1.7e12, µs ~1.7e15 today) cannot be confused."""
    v = num.to_numpy(dtype="int64")
    if time_unit == "ms":
        return v
    if time_unit == "us":
        return v // 1000
    return np.where(v >= US_THRESHOLD, v // 1000, v)


def normalise(df: pd.DataFrame, time_unit: str | None = None, first_line: int | None = None) -> pd.DataFrame:
    """Coerce a raw table to the kline schema (UTC ms timestamps, float64 prices).

    ``time_unit`` ("ms"/"us") forces the unit of epoch values; None judges it per row.
    ``first_line``: the file line of the first row, so that errors name lines (else rows).
    Raises :class:`DataError` naming the column, the row and the value when a required column
    is missing, a time or price cell is blank, a value does not parse, a number is not finite,
    or a time lies outside 1970..2100.
    """
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"kline data lacks column(s) {', '.join(missing)}; expected Binance kline columns {', '.join(KLINE_COLUMNS)}")

    def where(i: int) -> str:
        at = f"line {i + first_line}" if first_line is not None else f"row {i}"
        return f"{at} (open time {out['open_time'].iloc[i]})" if "open_time" in out.columns else at

    def fail(col: str, values: pd.Series, mask: np.ndarray, what: str) -> None:
        i = int(np.argmax(mask))
        v = values.iloc[i]
        shown = "a blank cell" if pd.isna(v) or str(v).strip() == "" else repr(v)
        raise DataError(f"column {col}, {where(i)}: {shown} {what}; the file is corrupt: download it again")

    out = pd.DataFrame(index=range(len(df)))
    for col in KLINE_COLUMNS:
        if col not in df.columns:
            continue
        values = df[col].reset_index(drop=True)
        if col in TIME_COLUMNS:
            if pd.api.types.is_datetime64_any_dtype(values):
                ts = pd.to_datetime(values, utc=True)
            else:
                num = pd.to_numeric(values, errors="coerce")
                bad = num.isna().to_numpy()
                if bad.any():
                    fail(col, values, bad, "is not an epoch timestamp")
                ms = _epoch_ms(num, time_unit)
                bad = (ms < 0) | (ms >= LATEST_MS)
                if bad.any():
                    fail(col, values, bad, "is not a time between 1970 and 2100 (epoch ms or µs)")
                ts = pd.to_datetime(ms, unit="ms", utc=True)
            out[col] = pd.Series(ts).astype("datetime64[ms, UTC]")
            continue
        num = pd.to_numeric(values, errors="coerce")
        # a blank price or volume is never a candle; a blank optional field stays NaN
        unparsed = np.array(num.isna() & (values.notna() | (col in CANDLE_COLUMNS)))
        if unparsed.any():
            fail(col, values, unparsed, "is not a number")
        infinite = np.isinf(num.to_numpy(dtype="float64"))
        if infinite.any():
            fail(col, values, infinite, "is not a finite number")
        if col == "trades":
            out[col] = num.astype("int64") if num.notna().all() else num.astype("float64")
        else:
            out[col] = num.astype("float64")
    return out


def validate(df: pd.DataFrame, interval_ms: int, gap_policy: str = "keep", max_fill: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort, de-duplicate, sanity-check and gap-handle a kline table.

    Returns the cleaned table and a data-quality summary. Exact duplicate rows are dropped; two
    different candles for one open time are an error. Raises :class:`DataError` on NaN,
    non-positive prices, broken OHLC (high below open/close, low above them), timestamps off the
    interval grid, an empty table, or any gap when ``gap_policy == "error"``. ``ffill`` inserts
    the missing candles as flat candles at the previous close with zero volume and trades, for
    gaps of at most ``max_fill`` candles (None: one day of candles); a longer gap, or filling
    that would more than double the table, is an error. ``filled_share`` in the summary is the
    fraction (0..1) of the returned candles that were filled.
    """
    if df.empty:
        raise DataError("no candles: the source returned nothing for this symbol, interval and date range")
    n_in = len(df)
    df = df.sort_values("open_time", kind="stable")
    df = df[~df.duplicated(keep="last")]
    conflicting = df.duplicated("open_time", keep=False)
    if conflicting.any():
        t = df.loc[conflicting, "open_time"].iloc[0]
        raise DataError(f"two different candles for open time {t}: the data mixes two sources (another symbol, interval or market?); "
                        "remove the wrong data")
    df = df.reset_index(drop=True)
    dups = n_in - len(df)

    prices = df[["open", "high", "low", "close"]]
    nan_rows = df[CANDLE_COLUMNS].isna().any(axis=1)
    if nan_rows.any():
        raise DataError(f"{int(nan_rows.sum())} candle(s) have missing values, first at {df.loc[nan_rows.idxmax(), 'open_time']}; the file is corrupt: download it again")
    infinite = ~np.isfinite(df[["open", "high", "low", "close", "volume"]].to_numpy()).all(axis=1)
    if infinite.any():
        i = int(infinite.argmax())
        raise DataError(f"non-finite price or volume in candle {df.loc[i, 'open_time']}; the data is corrupt: download it again")
    if (prices <= 0).any(axis=None):
        i = int((prices <= 0).any(axis=1).idxmax())
        raise DataError(f"non-positive price in candle {df.loc[i, 'open_time']}; the file is corrupt: download it again")
    if (df["volume"] < 0).any():
        raise DataError("negative volume; the file is corrupt: download it again")
    bad_high = df["high"] < np.maximum(df["open"], df["close"])
    bad_low = df["low"] > np.minimum(df["open"], df["close"])
    bad = bad_high | bad_low
    if bad.any():
        i = int(bad.idxmax())
        raise DataError(
            f"{int(bad.sum())} candle(s) break OHLC sanity (high >= max(open, close), low <= min(open, close)), "
            f"first at {df.loc[i, 'open_time']}: o={df.loc[i, 'open']} h={df.loc[i, 'high']} l={df.loc[i, 'low']} c={df.loc[i, 'close']}; "
            "are the columns in Binance order (open_time, open, high, low, close, volume, ...)?"
        )
    ot = df["open_time"].astype("int64").to_numpy()  # ms since epoch
    if interval_ms <= 86_400_000:
        off = ot % interval_ms != 0
        if off.any():
            raise DataError(f"candle open time {df.loc[int(off.argmax()), 'open_time']} is not on the {interval_ms // 60000}-minute grid: is data.interval right for this file?")
    step = np.diff(ot)
    gap_idx = np.nonzero(step > interval_ms)[0]
    missing = (step[gap_idx] // interval_ms - 1) if len(gap_idx) else np.array([], dtype=np.int64)
    largest = int(missing.max()) if len(missing) else 0
    largest_at = df.loc[int(gap_idx[missing.argmax()]) + 1, "open_time"] if len(missing) else None
    if len(gap_idx) and gap_policy == "error":
        first = pd.Timestamp(int(ot[gap_idx[0]] + interval_ms), unit="ms", tz="UTC")
        raise DataError(
            f"{len(gap_idx)} gap(s) in the candles ({int(missing.sum())} missing), first at {first}; "
            "set data.gap_policy to 'keep' or 'ffill' to accept them"
        )
    limit = candles_per_day(interval_ms) if max_fill is None else max_fill
    filled = 0
    if len(gap_idx) and gap_policy == "ffill":
        if largest > limit:
            j = int(gap_idx[missing.argmax()])
            raise DataError(
                f"gap of {largest} missing candles between {df.loc[j, 'open_time']} and {df.loc[j + 1, 'open_time']} "
                f"is longer than data.max_fill ({limit}): download the missing candles, set data.gap_policy: keep, "
                "or raise data.max_fill"
            )
        grid = len(df) + int(missing.sum())
        if grid > FILL_GRID_FACTOR * len(df):
            raise DataError(
                f"filling {int(missing.sum())} missing candles in {len(gap_idx)} gaps would make {grid} candles from "
                f"{len(df)} real ones (over {FILL_GRID_FACTOR}x): most of the data would be synthetic; "
                "download the missing candles or set data.gap_policy: keep"
            )
        df, filled = _ffill_gaps(df, interval_ms)
    quality = {
        "rows": int(len(df)),
        "first_candle": df["open_time"].iloc[0].isoformat(),
        "last_candle": df["open_time"].iloc[-1].isoformat(),
        "gaps": int(len(gap_idx)),
        "missing_candles": int(missing.sum()) if len(missing) else 0,
        "largest_gap_candles": largest,
        "largest_gap_before": largest_at.isoformat() if largest_at is not None else None,
        "duplicates_dropped": int(dups),
        "filled_candles": int(filled),
        "gap_policy": gap_policy,
        "filled_share": filled / len(df),
        "max_fill": limit,
    }
    return df, quality


def _ffill_gaps(df: pd.DataFrame, interval_ms: int) -> tuple[pd.DataFrame, int]:
    """Insert the missing candles (flat at the previous close, zero volume and trades). Only the
    inserted rows are filled: a real candle's NaN fields (e.g. a missing quote volume) stay NaN.
    The caller bounds the grid (see :func:`validate`)."""
    start, end = df["open_time"].iloc[0], df["open_time"].iloc[-1]
    grid = pd.date_range(start, end, freq=pd.Timedelta(milliseconds=interval_ms), tz="UTC").astype("datetime64[ms, UTC]")
    out = df.set_index("open_time").reindex(grid)
    new = ~out.index.isin(df["open_time"])
    prev_close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out.loc[new, col] = prev_close[new]
    for col in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote", "trades"):
        if col in out.columns:
            out.loc[new, col] = 0
    if "trades" in out.columns and out["trades"].notna().all():
        out["trades"] = out["trades"].astype("int64")
    if "close_time" in out.columns:
        out.loc[new, "close_time"] = (out.index[new] + pd.Timedelta(milliseconds=interval_ms - 1))
    out.index.name = "open_time"
    return out.reset_index(), int(new.sum())


def drop_forming(df: pd.DataFrame, now_ms: int, interval_ms: int) -> pd.DataFrame:
    """Drop candles that had not closed at ``now_ms`` (their close time is in the future)."""
    close_ms = df["open_time"].astype("int64") + interval_ms - 1
    return df[close_ms.to_numpy() < now_ms].reset_index(drop=True)


def cut(df: pd.DataFrame, start_ms: int | None, end_ms: int | None, column: str = "open_time") -> pd.DataFrame:
    """The rows with ``start_ms <= column < end_ms`` (epoch ms, UTC; None = open): candles by ``open_time``,
    funding settlements by ``funding_time``."""
    t = df[column].astype("int64")
    keep = pd.Series(True, index=df.index)
    if start_ms is not None:
        keep &= t >= start_ms
    if end_ms is not None:
        keep &= t < end_ms
    return df[keep].reset_index(drop=True)
