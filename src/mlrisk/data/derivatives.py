"""USDT-M perpetual futures data beside the candles: the funding history and mark-price klines.

``data.market: futures`` makes the ``fetch`` stage write, in ``data/raw/``, the perpetual's
klines (``{SYMBOL}-{INTERVAL}.parquet``, the kline schema of :mod:`mlrisk.data.klines`) and,
where the source has them, these two tables (file names from :func:`funding_path` and
:func:`mark_path`; read them with :func:`load_funding` and :func:`load_mark`):

**Funding** ``{SYMBOL}-funding.parquet``, one row per settlement, sorted by ``funding_time``:

- ``funding_time`` ``datetime64[ms, UTC]``: the settlement, rounded down to the hour (the join
  key to hourly candles; Binance settles on the hour, 00:00/08:00/16:00 UTC for 8 h).
- ``funding_time_raw`` ``datetime64[ms, UTC]``: the time as Binance gives it (``fundingTime`` of
  ``/fapi/v1/fundingRate``, ``calc_time`` of the dumps), with its millisecond jitter
  (e.g. ``1663891200023`` = 00:00:00.023).
- ``funding_rate`` float64: the rate settled then, a fraction of the position's notional at the
  mark price (``0.0001`` = 0.01 %); positive: longs pay shorts, negative: shorts pay longs.
- ``interval_hours`` int64: the symbol's funding interval in force for this settlement, hours
  (the dumps' ``funding_interval_hours``; from the REST API, ``/fapi/v1/fundingInfo``'s
  ``fundingIntervalHours`` for the symbol, 8 where it is not listed; the sample: 8).
- ``mark_price`` float64: the mark price at settlement where the source gives it (REST
  ``markPrice``), else NaN (the dumps and the sample lack it).

A rate is known from ``funding_time_raw`` on (no earlier: no lookahead).

**Metrics** ``{SYMBOL}-metrics.parquet`` (file source only, optional: the public dumps' daily
``metrics`` files, ``futures/um/daily/metrics/SYMBOL/SYMBOL-metrics-YYYY-MM-DD.zip``), one row per
5 minutes: ``create_time`` ``datetime64[ms, UTC]`` (the row's timestamp; Binance publishes a
day's file after the day ends, so a point-in-time feature must also wait for that) and Binance's
columns as float64, blank cells NaN: ``sum_open_interest`` (open interest, base asset),
``sum_open_interest_value`` (USDT), ``count_toptrader_long_short_ratio`` (top traders' long/short
account ratio), ``sum_toptrader_long_short_ratio`` (top traders' long/short position ratio),
``count_long_short_ratio`` (all accounts' long/short ratio), ``sum_taker_long_short_vol_ratio``
(taker buy/sell volume ratio). Two rows for one time (Binance's files have some) keep the last;
both those and missing 5-minute rows are counted.

**Mark-price klines** ``{SYMBOL}-{INTERVAL}-mark.parquet``, one row per candle: ``open_time``
``datetime64[ms, UTC]``, ``open``/``high``/``low``/``close`` float64 (USDT; Binance's mark
price, which liquidation uses), and ``close_time`` ``datetime64[ms, UTC]`` where the source has
it. Mark klines carry no volume. A missing mark candle is counted, never filled.

Validation (counted under ``funding`` and ``mark`` in ``reports/data_quality.json``): times
sorted; exact duplicate rows dropped and counted; two different rows for one time are an error;
a funding time :data:`MAX_JITTER_MS` (60 s) or more past the hour (:func:`settlement_hour`), a blank or non-finite rate, or a
mark candle that breaks OHLC sanity or the interval grid is an error. A settlement on the
symbol's schedule is expected: on the UTC grid of its ``interval_hours`` (00/08/16 h for 8 h),
one every ``interval_hours``. A missing one is counted (``missing_settlements``, ``gaps``), one
off the grid is counted (``off_schedule``). Binance changes a symbol's interval; where the data
records a change (the dumps say so per row: ``interval_changes``), the new interval applies from
that row. The REST history has no per-row interval: the current one from ``fundingInfo`` is
assumed throughout, so an older schedule shows as ``off_schedule``, not as an error.

**The shipped sample** (``data.source: sample``, ``data.market: futures``; BTCUSDT 1h only):
real Binance USDT-M BTCUSDT perpetual data for 2022-09-23T00:00Z..2024-09-22T23:00Z (the spot
sample's window): ``BTCUSDT-perp-1h.csv.gz`` (17,544 perp klines, ``open_time`` + OHLCV only:
no ``close_time``, ``quote_volume``, ``trades`` or taker-buy columns, so the
``taker_buy_share`` feature is refused), ``BTCUSDT-markPrice-1h.csv.gz`` (17,544 mark klines)
and ``BTCUSDT-fundingRate.csv.gz`` (2,193 settlements, every 8 h, 724 of them with 1..29 ms
jitter; rates as Binance's 8-decimal text). Sources: freqtrade downloads of Binance's futures
API kept in public GitHub repositories (Roshan7869/algotrading for the klines;
supervik/historical-funding-rates-fetcher and kalievil/ml-trading-system for funding),
cross-checked against independent copies and raw API output; the perp traded through the
2023-03-24 spot halt (the spot sample has a gap there, the perp none). Open-interest and
long/short history were not available for this window.
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from mlrisk.data.klines import KLINE_COLUMNS, normalise, validate
from mlrisk.errors import DataError
from mlrisk.io import read_parquet

if TYPE_CHECKING:
    from mlrisk.exchange import ExchangeClient

HOUR_MS = 3_600_000
DEFAULT_INTERVAL_HOURS = 8  # Binance: a symbol not listed by /fapi/v1/fundingInfo settles every 8 h
#: a funding time less than this many ms past an hour is that hour's settlement (charged on the positions held at
#: the hour); one this far past it or more is not a settlement time. Binance's funding FAQ: "there is a 1 minute
#: deviation in the actual funding fee transaction time" (a position opened at 08:00:59 may still pay the 08:00
#: settlement); the stamps in its history are a few ms past the hour. The one limit of the data and the backtest.
MAX_JITTER_MS = 60_000
FUNDING_COLUMNS = ["funding_time", "funding_time_raw", "funding_rate", "interval_hours", "mark_price"]
MARK_COLUMNS = ["open_time", "open", "high", "low", "close", "close_time"]
METRIC_VALUES = ["sum_open_interest", "sum_open_interest_value", "count_toptrader_long_short_ratio",
                 "sum_toptrader_long_short_ratio", "count_long_short_ratio", "sum_taker_long_short_vol_ratio"]
METRICS_COLUMNS = ["create_time", *METRIC_VALUES]
METRICS_STEP_MS = 300_000  # the dumps' metrics rows come every 5 minutes

FUTURES_SAMPLES = {("BTCUSDT", "1h"): ("BTCUSDT-perp-1h.csv.gz", "BTCUSDT-markPrice-1h.csv.gz", "BTCUSDT-fundingRate.csv.gz")}


def funding_path(raw_dir: str | Path, symbol: str) -> Path:
    """Where the fetch stage stores ``symbol``'s funding history."""
    return Path(raw_dir) / f"{symbol}-funding.parquet"


def mark_path(raw_dir: str | Path, symbol: str, interval: str) -> Path:
    """Where the fetch stage stores ``symbol``'s mark-price klines."""
    return Path(raw_dir) / f"{symbol}-{interval}-mark.parquet"


def spot_path(raw_dir: str | Path, symbol: str, interval: str) -> Path:
    """Where the fetch stage stores the spot candles of a futures run's symbol (for spot-based
    features and the basis; the kline schema of :mod:`mlrisk.data.klines`)."""
    return Path(raw_dir) / f"{symbol}-{interval}-spot.parquet"


def metrics_path(raw_dir: str | Path, symbol: str) -> Path:
    """Where the fetch stage stores ``symbol``'s metrics (open interest, long/short ratios)."""
    return Path(raw_dir) / f"{symbol}-metrics.parquet"


def load_metrics(path: str | Path) -> pd.DataFrame:
    """The metrics table the fetch stage wrote (schema in the module docstring)."""
    df = read_parquet(path, "run `dvc repro fetch` with data.market: futures and metrics dumps in data.files")
    _check_columns(df, METRICS_COLUMNS, path)
    return df


def load_funding(path: str | Path) -> pd.DataFrame:
    """The funding table the fetch stage wrote (schema in the module docstring); a missing or
    damaged file is a one-line :class:`DataError`."""
    df = read_parquet(path, "run `dvc repro fetch` with data.market: futures")
    _check_columns(df, FUNDING_COLUMNS, path)
    return df


def load_mark(path: str | Path) -> pd.DataFrame:
    """The mark-price klines the fetch stage wrote (schema in the module docstring)."""
    df = read_parquet(path, "run `dvc repro fetch` with data.market: futures")
    _check_columns(df, MARK_COLUMNS[:5], path)
    return df


def raw_tables(raw_dir: str | Path, symbol: str, interval: str) -> dict[str, Callable[[], pd.DataFrame | None]]:
    """The one reader of the tables the fetch stage writes in ``raw_dir`` (``data/raw``): ``perp`` (the
    traded candles, ``{SYMBOL}-{INTERVAL}.parquet``), ``spot``, ``funding``, ``mark``, ``metrics`` (paths:
    :func:`spot_path`, :func:`funding_path`, :func:`mark_path`, :func:`metrics_path`), each a loader
    called when needed that returns None when the fetch stage did not write that table (a file source
    without such dumps, a spot run); a damaged file is a one-line :class:`DataError`. Callers decide
    what a missing table means (the backtest and a replay fall back; the features need it:
    :func:`mlrisk.data.point_in_time.raw_loaders`)."""
    def opt(path: Path, load: Callable[[Path], pd.DataFrame]) -> Callable[[], pd.DataFrame | None]:
        return lambda: load(path) if path.exists() else None

    return {
        "perp": opt(Path(raw_dir) / f"{symbol}-{interval}.parquet", lambda p: read_parquet(p, "run `dvc repro fetch`")),
        "spot": opt(spot_path(raw_dir, symbol, interval), lambda p: read_parquet(p, "run `dvc repro fetch`")),
        "funding": opt(funding_path(raw_dir, symbol), load_funding),
        "mark": opt(mark_path(raw_dir, symbol, interval), load_mark),
        "metrics": opt(metrics_path(raw_dir, symbol), load_metrics),
    }


def _check_columns(df: pd.DataFrame, cols: list[str], path: str | Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}: it is not a futures table of this version; run `dvc repro fetch`")


# --------------------------------------------------------------------------- funding
def funding_from_raw(times: Any, rates: Any, interval_hours: Any = DEFAULT_INTERVAL_HOURS, mark_price: Any = None,
                     where: str = "funding") -> pd.DataFrame:
    """Build a funding table from raw values: ``times`` epoch ms (jitter kept), ``rates`` text
    or numbers (fractions per settlement), ``interval_hours`` one value or one per row,
    ``mark_price`` (USDT) or None. A value that does not parse is a :class:`DataError` naming
    ``where`` and the row."""
    t = pd.to_numeric(pd.Series(times, dtype=object), errors="coerce")
    r = pd.to_numeric(pd.Series(rates, dtype=object), errors="coerce")
    n = len(t)
    if len(r) != n:
        raise DataError(f"{where}: {n} times but {len(r)} rates")
    for name, col, raw in (("funding time", t, times), ("funding rate", r, rates)):
        bad = col.isna().to_numpy() | ~np.isfinite(col.to_numpy(dtype="float64"))
        if bad.any():
            i = int(bad.argmax())
            raise DataError(f"{where}: row {i}: {name} {list(raw)[i]!r} is not a number; the data is corrupt: download it again")
    ms = t.to_numpy(dtype="int64")
    ih_raw = list(interval_hours) if np.ndim(interval_hours) else [interval_hours] * n
    ih = pd.to_numeric(pd.Series(ih_raw, dtype=object), errors="coerce").to_numpy(dtype="float64")
    if np.isnan(ih).any() or (ih <= 0).any():
        i = int((np.isnan(ih) | (ih <= 0)).argmax())
        raise DataError(f"{where}: row {i}: funding interval {ih[i]} is not a positive number of hours; the data is corrupt: download it again")
    mp = np.full(n, np.nan) if mark_price is None else pd.to_numeric(pd.Series(mark_price, dtype=object).replace("", np.nan), errors="coerce").to_numpy(dtype="float64")
    raw_ts = pd.to_datetime(ms, unit="ms", utc=True).astype("datetime64[ms, UTC]")
    return pd.DataFrame({
        "funding_time": pd.to_datetime(ms // HOUR_MS * HOUR_MS, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
        "funding_time_raw": raw_ts,
        "funding_rate": r.to_numpy(dtype="float64"),
        "interval_hours": ih.astype("int64"),
        "mark_price": mp,
    })


def settlement_hour(times_ms: Any) -> np.ndarray:
    """The scheduled hour (epoch ms, int64) of each funding time ``times_ms`` (epoch ms as Binance
    stamps it): the hour it is less than :data:`MAX_JITTER_MS` past. The one rule of which settlement
    a time is, for the data's checks and the backtest's charges. A time that far past its hour or
    more is not a settlement time: a one-line :class:`DataError`."""
    raw = np.asarray(times_ms, dtype=np.int64)
    slot = raw // HOUR_MS * HOUR_MS
    late = raw - slot >= MAX_JITTER_MS
    if late.any():
        i = int(late.argmax())
        when = pd.Timestamp(int(raw[i]), unit="ms", tz="UTC")
        raise DataError(f"funding time {when} is {(raw[i] - slot[i]) / 1000:.0f} s past the hour: not a Binance "
                        "settlement time; is this a funding-rate file?")
    return slot


def validate_funding(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort, de-duplicate and check a funding table (see the module docstring). Returns the table
    and its quality summary; missing and off-schedule settlements are counted, not filled."""
    if df.empty:
        raise DataError("no funding settlements: the source returned none for this symbol and date range")
    n_in = len(df)
    df = df.sort_values("funding_time_raw", kind="stable")
    df = df[~df.duplicated(["funding_time_raw", "funding_rate", "interval_hours"], keep="last")]
    clash = df.duplicated("funding_time", keep=False)
    if clash.any():
        t = df.loc[clash, "funding_time"].iloc[0]
        raise DataError(f"two different funding settlements for {t}: the data mixes two sources (another symbol?); remove the wrong data")
    df = df.reset_index(drop=True)
    raw = df["funding_time_raw"].astype("int64").to_numpy()
    slot = settlement_hour(raw)
    jitter = raw - slot
    ih = df["interval_hours"].to_numpy()
    off = (slot // HOUR_MS) % ih != 0  # a settlement not on its interval's UTC grid (00/08/16 h for 8 h)
    step_h = np.diff(slot) // HOUR_MS
    changed = ih[1:] != ih[:-1]  # the data records an interval change here: the shorter one applies between
    expect = np.where(changed, np.minimum(ih[1:], ih[:-1]), ih[1:])
    missing = np.where(~off[1:] & ~off[:-1], np.maximum(step_h // expect - 1, 0), 0)
    gap_idx = np.nonzero(missing > 0)[0]
    quality = {
        "rows": int(len(df)),
        "first_settlement": df["funding_time_raw"].iloc[0].isoformat(),
        "last_settlement": df["funding_time_raw"].iloc[-1].isoformat(),
        "interval_hours": int(ih[-1]),
        "interval_changes": int(changed.sum()),
        "gaps": int(len(gap_idx)),
        "missing_settlements": int(missing.sum()),
        "largest_gap_settlements": int(missing.max()) if len(gap_idx) else 0,
        "largest_gap_before": df.loc[int(gap_idx[missing[gap_idx].argmax()]) + 1, "funding_time"].isoformat() if len(gap_idx) else None,
        "off_schedule": int(off.sum()),
        "first_off_schedule": df.loc[int(off.argmax()), "funding_time_raw"].isoformat() if off.any() else None,
        "duplicates_dropped": int(n_in - len(df)),
        "jittered": int((jitter > 0).sum()),
        "max_jitter_ms": int(jitter.max()),
        "with_mark_price": int(df["mark_price"].notna().sum()),
        "mean_rate": float(df["funding_rate"].mean()),
    }
    return df[FUNDING_COLUMNS], quality


# --------------------------------------------------------------------------- mark klines
def to_mark(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the mark-kline columns of a kline table (Binance's mark rows carry "0" volume)."""
    return df[[c for c in MARK_COLUMNS if c in df.columns]].reset_index(drop=True)


def validate_mark(df: pd.DataFrame, interval_ms: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check mark klines like candles (:func:`mlrisk.data.klines.validate`, gaps kept and
    counted, never filled). Returns the mark table and its quality summary."""
    if df.empty:
        raise DataError("no mark-price candles: the source returned none for this symbol, interval and date range")
    work = df.assign(volume=0.0) if "volume" not in df.columns else df
    out, q = validate(work, interval_ms, gap_policy="keep")
    keys = ("rows", "first_candle", "last_candle", "gaps", "missing_candles", "largest_gap_candles", "largest_gap_before", "duplicates_dropped")
    return to_mark(out), {k: q[k] for k in keys}


def mark_coverage(candles: pd.DataFrame, mark: pd.DataFrame) -> int:
    """How many candles have no mark candle at their open time (the engine falls back to the last
    price for those)."""
    return int((~candles["open_time"].isin(mark["open_time"])).sum())


# --------------------------------------------------------------------------- sample
def _sample_csv(name: str) -> pd.DataFrame:
    with resources.files("mlrisk.data").joinpath(name).open("rb") as fh, gzip.open(fh, "rt") as text:
        return pd.read_csv(text, dtype=str)


def load_futures_sample(symbol: str, interval: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The shipped perpetual sample: (perp klines, mark klines, funding), unvalidated."""
    names = FUTURES_SAMPLES.get((symbol, interval))
    if names is None:
        have = ", ".join(f"{s} {i}" for s, i in FUTURES_SAMPLES)
        raise DataError(f"data.source 'sample' with data.market 'futures' ships only {have} (perp klines, mark price, "
                        f"funding); got {symbol} {interval}: change data.symbol/data.interval or use data.source 'binance'")
    perp_name, mark_name, funding_name = names
    perp = normalise(_sample_csv(perp_name), time_unit="ms")
    mark = normalise(_sample_csv(mark_name).assign(volume="0"), time_unit="ms")
    f = _sample_csv(funding_name)
    funding = funding_from_raw(f["fundingTime"], f["fundingRate"], DEFAULT_INTERVAL_HOURS, where=funding_name)
    return perp, to_mark(mark), funding


# --------------------------------------------------------------------------- files
# data.binance.vision futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip
FUNDING_DUMP = re.compile(r"^(?P<symbol>[A-Z0-9]{2,30})-fundingRate-\d{4}-\d{2}\.(csv|zip)$")
# futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-2024-01-15.zip
METRICS_DUMP = re.compile(r"^(?P<symbol>[A-Z0-9]{2,30})-metrics-\d{4}-\d{2}-\d{2}\.(csv|zip)$")
MARK_DIR = "markPriceKlines"  # .../markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip: named like the kline dumps
SPOT_DIR = "spot"  # data/files/spot/BTCUSDT-1h-2024-01.zip: the spot kline dumps of a futures run (the spot companion)
UNSUPPORTED_DIRS = ("indexPriceKlines", "premiumIndexKlines", "trades", "aggTrades", "bookTicker", "bookDepth")


def dump_kind(path: str | Path) -> str:
    """What a ``data.files`` entry holds: "funding" (a ``SYMBOL-fundingRate-YYYY-MM`` dump),
    "metrics" (``SYMBOL-metrics-YYYY-MM-DD``), "mark" (a kline dump inside a ``markPriceKlines``
    folder, as data.binance.vision lays them out), "spot" (a spot kline dump inside a ``spot``
    folder: the spot candles beside a futures run's) or "klines". Another dump kind is a
    :class:`DataError`."""
    p = Path(path)
    if FUNDING_DUMP.match(p.name) or "fundingRate" in p.parts:
        return "funding"
    if METRICS_DUMP.match(p.name) or "metrics" in p.parts:
        return "metrics"
    if MARK_DIR in p.parts:
        return "mark"
    if SPOT_DIR in p.parts:
        return "spot"
    for d in UNSUPPORTED_DIRS:
        if d in p.parts or f"-{d}-" in p.name:
            raise DataError(f"data.files: {path} is a '{d}' dump, which fetch does not read: list kline, markPriceKlines or fundingRate dumps")
    return "klines"


def read_dump_text(path: Path) -> tuple[str, str | None]:
    """The text of one Binance dump (a CSV, or a zip holding one CSV) and the CSV's name inside a zip
    (None for a plain CSV); a missing or unreadable file is a one-line :class:`DataError`."""
    if not path.exists():
        raise DataError(f"data.files: {path} does not exist")
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".csv")]
                if len(names) != 1:
                    raise DataError(f"{path}: expected one CSV inside the zip, found {len(names)}")
                return zf.read(names[0]).decode(), names[0]
        return path.read_text(), None
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, OSError) as e:
        kind = type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
        raise DataError(f"{path}: cannot read ({kind}: {e}); the file is corrupt: download it again") from None


def _dump_text(path: Path, symbol: str, name: re.Pattern[str]) -> str:
    """The text of a dump whose file name (and the CSV's inside a zip) matches ``name``; a name for another
    symbol, or an empty file, is a :class:`DataError`."""
    text, inner = read_dump_text(path)
    for file, where in ((path.name, str(path)), (inner, f"{path} (holds {inner})")):
        m = name.match(Path(file).name) if file else None
        if m and m["symbol"] != symbol:
            raise DataError(f"{where}: the file name says {m['symbol']} but data.symbol is {symbol}: list the right files or change data.symbol")
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def read_funding_file(path: str | Path, symbol: str) -> pd.DataFrame:
    """Read one monthly ``fundingRate`` dump (CSV or zip of one CSV; columns ``calc_time``
    (epoch ms, with jitter), ``funding_interval_hours``, ``last_funding_rate``; header line
    optional). A dump named for another symbol is a :class:`DataError`."""
    path = Path(path)
    text = _dump_text(path, symbol, FUNDING_DUMP)
    first = text.lstrip().split("\n", 1)[0]
    has_header = not first.split(",")[0].strip().isdigit()
    raw = pd.read_csv(io.StringIO(text.strip("\n") + "\n"), header=0 if has_header else None, dtype=str, skip_blank_lines=False)
    if has_header:
        raw.columns = [c.strip().lower() for c in raw.columns]
    else:
        raw.columns = ["calc_time", "funding_interval_hours", "last_funding_rate"][: raw.shape[1]] + [f"x{i}" for i in range(max(0, raw.shape[1] - 3))]
    need = ["calc_time", "funding_interval_hours", "last_funding_rate"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: lacks column(s) {', '.join(missing)}; a Binance fundingRate dump has {', '.join(need)}")
    return funding_from_raw(raw["calc_time"], raw["last_funding_rate"], raw["funding_interval_hours"], where=str(path))


def read_metrics_file(path: str | Path, symbol: str) -> pd.DataFrame:
    """Read one daily ``metrics`` dump (CSV or zip of one CSV, with its header line; see the
    module docstring). A dump named for, or holding rows of, another symbol is a :class:`DataError`."""
    path = Path(path)
    text = _dump_text(path, symbol, METRICS_DUMP)
    raw = pd.read_csv(io.StringIO(text), dtype=str)
    raw.columns = [c.strip().lower() for c in raw.columns]
    missing = [c for c in ["create_time", "symbol", *METRIC_VALUES] if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: lacks column(s) {', '.join(missing)}; a Binance metrics dump has create_time, symbol, "
                        f"{', '.join(METRIC_VALUES)}")
    other = raw["symbol"].dropna().loc[lambda v: v != symbol]
    if len(other):
        raise DataError(f"{path}: line {int(other.index[0]) + 2} is {other.iloc[0]}, not data.symbol {symbol}: list the right files")
    t = pd.to_datetime(raw["create_time"], utc=True, errors="coerce", format="%Y-%m-%d %H:%M:%S")
    if t.isna().any():
        i = int(t.isna().to_numpy().argmax())
        raise DataError(f"{path}: line {i + 2}: create_time {raw['create_time'].iloc[i]!r} is not a UTC time like "
                        "2024-01-15 00:05:00; the file is corrupt: download it again")
    out = pd.DataFrame({"create_time": t.astype("datetime64[ms, UTC]")})
    for col in METRIC_VALUES:
        v = pd.to_numeric(raw[col], errors="coerce")
        bad = v.isna() & raw[col].notna() & (raw[col].str.strip() != "")
        if bad.any() or np.isinf(v.to_numpy(dtype="float64")).any():
            i = int((bad | np.isinf(v)).to_numpy().argmax())
            raise DataError(f"{path}: line {i + 2}: {col} {raw[col].iloc[i]!r} is not a finite number; the file is corrupt: download it again")
        out[col] = v.astype("float64")
    return out


def read_metrics_files(paths: list[str], symbol: str) -> pd.DataFrame:
    """Read and join daily metrics dumps (:func:`read_metrics_file`); validate with :func:`validate_metrics`."""
    return pd.concat([read_metrics_file(p, symbol) for p in paths], ignore_index=True)


def validate_metrics(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Sort and de-duplicate metrics rows (exact repeats dropped; two rows for one time keep the
    last, both counted); missing 5-minute rows and blank cells are counted, not filled."""
    if df.empty:
        raise DataError("no metrics rows between data.start and data.end in the metrics dumps listed in data.files: check the dates and the files")
    n_in = len(df)
    df = df.sort_values("create_time", kind="stable")
    df = df[~df.duplicated(keep="last")]
    exact = n_in - len(df)
    clash = df.duplicated("create_time", keep="last")
    df = df[~clash].reset_index(drop=True)
    t = df["create_time"].astype("int64").to_numpy()
    step = np.diff(t)
    missing = np.maximum(step // METRICS_STEP_MS - 1, 0)
    quality = {
        "rows": int(len(df)),
        "first_row": df["create_time"].iloc[0].isoformat(),
        "last_row": df["create_time"].iloc[-1].isoformat(),
        "gaps": int((missing > 0).sum()),
        "missing_rows": int(missing.sum()),
        "duplicates_dropped": int(exact),
        "conflicting_rows_dropped": int(clash.sum()),
        "off_grid": int((t % METRICS_STEP_MS != 0).sum()),
        "blank_cells": int(df[METRIC_VALUES].isna().sum().sum()),
    }
    return df[METRICS_COLUMNS], quality


def read_funding_files(paths: list[str], symbol: str) -> pd.DataFrame:
    """Read and join fundingRate dumps (:func:`read_funding_file`); validate with :func:`validate_funding`."""
    return pd.concat([read_funding_file(p, symbol) for p in paths], ignore_index=True)


def read_mark_files(paths: list[str], symbol: str, interval: str, read_klines: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """Read markPriceKlines dumps (the kline layout; ``read_klines`` is the kline dump reader)."""
    return to_mark(read_klines(paths, symbol, interval))


# --------------------------------------------------------------------------- binance
FUNDING_PAGE_LIMIT = 1000  # /fapi/v1/fundingRate: limit default 100, max 1000


def funding_interval_hours(exchange: ExchangeClient, symbol: str) -> int:
    """The symbol's funding interval (hours) from ``/fapi/v1/fundingInfo``, which lists only the
    symbols whose interval or cap Binance adjusted; one not listed settles every 8 h."""
    info = exchange.call("futures_v1_get_funding_info")
    for row in info or []:
        if row.get("symbol") == symbol:
            return int(row["fundingIntervalHours"])
    return DEFAULT_INTERVAL_HOURS


def fetch_funding(exchange: ExchangeClient, symbol: str, start_ms: int, end_ms: int | None, interval_hours: int) -> pd.DataFrame:
    """All settlements with ``start_ms <= fundingTime < end_ms`` (None = up to now) from
    ``/fapi/v1/fundingRate``, paged by ``startTime`` (the page is the first ``limit`` rows from
    ``startTime``); each page retried by the exchange client. Unvalidated."""
    rows: list[dict[str, Any]] = []
    cursor = start_ms
    while end_ms is None or cursor < end_ms:
        kw: dict[str, Any] = {"symbol": symbol, "startTime": cursor, "limit": FUNDING_PAGE_LIMIT}
        if end_ms is not None:
            kw["endTime"] = end_ms - 1
        page = exchange.call("futures_funding_rate", **kw)
        if not page:
            break
        rows.extend(page)
        nxt = int(page[-1]["fundingTime"]) + 1
        if nxt <= cursor or len(page) < FUNDING_PAGE_LIMIT:
            break
        cursor = nxt
    if not rows:
        return funding_from_raw([], [], interval_hours)
    return funding_from_raw([r["fundingTime"] for r in rows], [r["fundingRate"] for r in rows], interval_hours,
                            [r.get("markPrice") for r in rows], where="/fapi/v1/fundingRate")
