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


def _detect_time_unit(values: pd.Series) -> str:
    """Binance public dumps use ms up to 2024 and µs for spot from 2025 on."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "ms"
    return "us" if float(v.iloc[0]) > 1e14 else "ms"


def normalise(df: pd.DataFrame, time_unit: str | None = None) -> pd.DataFrame:
    """Coerce a raw table to the kline schema (UTC ms timestamps, float64 prices).

    Raises :class:`DataError` when a required column is missing or a value does not parse.
    """
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"kline data lacks column(s) {', '.join(missing)}; expected Binance kline columns {', '.join(KLINE_COLUMNS)}")
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
                bad = num.isna() & values.notna()
                if bad.any():
                    raise DataError(f"column {col}: value {values[bad].iloc[0]!r} at row {int(bad.idxmax())} is not an epoch timestamp; the file is corrupt: download it again")
                unit = time_unit or _detect_time_unit(num)
                ts = pd.to_datetime(num.astype("int64"), unit=unit, utc=True)
            out[col] = ts.astype("datetime64[ms, UTC]")
        elif col == "trades":
            num = pd.to_numeric(values, errors="coerce")
            out[col] = num.astype("int64") if num.notna().all() else num.astype("float64")
        else:
            num = pd.to_numeric(values, errors="coerce")
            bad = num.isna() & values.notna()
            if bad.any():
                raise DataError(f"column {col}: value {values[bad].iloc[0]!r} at row {int(bad.idxmax())} is not a number; the file is corrupt: download it again")
            out[col] = num.astype("float64")
    return out


def validate(df: pd.DataFrame, interval_ms: int, gap_policy: str = "keep") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort, de-duplicate, sanity-check and gap-handle a kline table.

    Returns the cleaned table and a data-quality summary. Raises :class:`DataError` on NaN,
    non-positive prices, broken OHLC (high below open/close, low above them), timestamps off the
    interval grid, an empty table, or any gap when ``gap_policy == "error"``. ``ffill`` inserts
    the missing candles as flat candles at the previous close with zero volume and trades.
    """
    if df.empty:
        raise DataError("no candles: the source returned nothing for this symbol, interval and date range")
    n_in = len(df)
    df = df.sort_values("open_time", kind="stable")
    exact_dups = df.duplicated(keep="last")
    df = df[~exact_dups]
    conflicting = df.duplicated("open_time", keep="last")
    df = df[~conflicting].reset_index(drop=True)
    dups = n_in - len(df)

    prices = df[["open", "high", "low", "close"]]
    nan_rows = df[CANDLE_COLUMNS].isna().any(axis=1)
    if nan_rows.any():
        raise DataError(f"{int(nan_rows.sum())} candle(s) have missing values, first at {df.loc[nan_rows.idxmax(), 'open_time']}; the file is corrupt: download it again")
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
    filled = 0
    if len(gap_idx) and gap_policy == "ffill":
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
    }
    return df, quality


def _ffill_gaps(df: pd.DataFrame, interval_ms: int) -> tuple[pd.DataFrame, int]:
    start, end = df["open_time"].iloc[0], df["open_time"].iloc[-1]
    grid = pd.date_range(start, end, freq=pd.Timedelta(milliseconds=interval_ms), tz="UTC").astype("datetime64[ms, UTC]")
    out = df.set_index("open_time").reindex(grid)
    new = out["close"].isna()
    prev_close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].fillna(prev_close)
    for col in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote", "trades"):
        if col in out.columns:
            out[col] = out[col].fillna(0)
    if "trades" in out.columns:
        out["trades"] = out["trades"].astype("int64")
    if "close_time" in out.columns:
        out.loc[new, "close_time"] = (out.index[new] + pd.Timedelta(milliseconds=interval_ms - 1))
    out.index.name = "open_time"
    return out.reset_index(), int(new.sum())


def drop_forming(df: pd.DataFrame, now_ms: int, interval_ms: int) -> pd.DataFrame:
    """Drop candles that had not closed at ``now_ms`` (their close time is in the future)."""
    close_ms = df["open_time"].astype("int64") + interval_ms - 1
    return df[close_ms.to_numpy() < now_ms].reset_index(drop=True)
