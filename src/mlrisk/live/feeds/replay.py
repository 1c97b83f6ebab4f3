"""Candles from a stored file, and the gap filling every feed shares: :func:`read_candle_file`
(the pipeline's raw parquet or a Binance kline CSV/zip), :func:`fill_gaps` (the pipeline's
``gap_policy: ffill``: a flat candle at the previous close, so candle numbers stay contiguous) and
:func:`open_ms` (open times, epoch ms UTC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.errors import DataError


def read_candle_file(path: str | Path, interval_ms: int) -> pd.DataFrame:
    """A stored candle file: the pipeline's raw parquet (``data/raw/*.parquet``) or a Binance kline
    CSV/zip; validated like the fetch stage (sorted, on the interval grid, gaps filled)."""
    from mlrisk.data.klines import normalise, validate
    from mlrisk.data.sources import read_kline_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"--replay {path}: no such file")
    if path.suffix == ".parquet":
        try:
            df = normalise(pd.read_parquet(path), time_unit="ms")
        except (OSError, ValueError) as e:
            raise DataError(f"--replay {path}: not a readable parquet file ({' '.join(str(e).split())[:120]})") from None
    else:
        df = read_kline_file(path)
    try:
        df, _ = validate(df, interval_ms, "ffill")
    except DataError as e:
        raise DataError(f"--replay {path}: {e}") from None
    return df.reset_index(drop=True)


def fill_gaps(df: pd.DataFrame, interval_ms: int) -> pd.DataFrame:
    """Sorted, de-duplicated, gaps filled (the pipeline's ``ffill``)."""
    from mlrisk.data.klines import validate

    return validate(df, interval_ms, "ffill")[0].reset_index(drop=True)


def open_ms(df: pd.DataFrame) -> np.ndarray:
    """Open times as epoch ms (int64)."""
    return pd.DatetimeIndex(df["open_time"]).as_unit("ms").asi8
