"""Candle sources for the ``fetch`` stage: the shipped sample, Binance (python-binance), or files.

Every source returns a kline table (see :mod:`mlrisk.data.klines`) that the caller validates.
The Binance source pages through the 1000-candle limit itself so that each page is retried on
its own (by :class:`mlrisk.exchange.ExchangeClient`: backoff on network errors and 5xx,
``Retry-After`` on 429/418, no API key sent), and a candle still forming at download time
(close time on the exchange's clock in the future) is never kept.
"""

from __future__ import annotations

import gzip
import io
import logging
import zipfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd
from tqdm.auto import tqdm

from mlrisk.errors import DataError
from mlrisk.data.klines import KLINE_COLUMNS, drop_forming, empty_klines, klines_from_rows, normalise, validate
from mlrisk.exchange import ExchangeClient
from mlrisk.times import to_ms, utc

if TYPE_CHECKING:
    from mlrisk.config import DataParams

log = logging.getLogger(__name__)

SAMPLES = {("BTCUSDT", "1h"): "BTCUSDT-1h.csv.gz", ("BTCUSDT", "15m"): "BTCUSDT-15m.csv.gz"}
PAGE_LIMIT = 1000


# --------------------------------------------------------------------------- sample
def load_sample(symbol: str, interval: str) -> pd.DataFrame:
    """The real Binance spot klines shipped with the package (BTCUSDT 1h, 2 years; 15m, 1 year)."""
    name = SAMPLES.get((symbol, interval))
    if name is None:
        have = ", ".join(f"{s} {i}" for s, i in SAMPLES)
        raise DataError(f"data.source 'sample' ships only {have}; got {symbol} {interval}: change data.symbol/data.interval or use data.source 'binance'")
    with resources.files("mlrisk.data").joinpath(name).open("rb") as fh, gzip.open(fh, "rt") as text:
        raw = pd.read_csv(text, dtype=str)
    return normalise(raw, time_unit="ms")


# --------------------------------------------------------------------------- files
def read_kline_file(path: str | Path) -> pd.DataFrame:
    """Read one Binance public-data kline dump: CSV or a zip holding one CSV.

    With or without a header line; timestamps in milliseconds or microseconds (detected).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data.files: {path} does not exist")
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".csv")]
                if len(names) != 1:
                    raise DataError(f"{path}: expected one CSV inside the zip, found {len(names)}")
                text = zf.read(names[0]).decode()
        else:
            text = path.read_text()
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is corrupt: download it again") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    first = text.lstrip().split("\n", 1)[0]
    has_header = not first.split(",")[0].strip().lstrip("-").isdigit()
    try:
        raw = pd.read_csv(io.StringIO(text), header=0 if has_header else None, dtype=str)
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a kline CSV ({e})") from None
    if not has_header:
        ncol = raw.shape[1]
        if ncol < 6:
            raise DataError(f"{path}: {ncol} columns; a Binance kline CSV has 12 (at least open_time..volume)")
        raw.columns = (KLINE_COLUMNS + ["ignore"])[:ncol] + [f"extra{i}" for i in range(max(0, ncol - 12))]
    else:
        raw.columns = [c.strip().lower().replace(" ", "_") for c in raw.columns]
        raw = raw.rename(columns={"timestamp": "open_time", "open_timestamp": "open_time"})
    try:
        return normalise(raw)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def read_kline_files(paths: list[str]) -> pd.DataFrame:
    frames = [read_kline_file(p) for p in paths]
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- binance
class BinanceKlines:
    """Downloads closed klines through an :class:`~mlrisk.exchange.ExchangeClient` (which retries
    each page). ``now_ms`` is injectable for tests; by default the exchange's clock."""

    def __init__(self, exchange: ExchangeClient, now_ms: Callable[[], int] | None = None, progress: bool = True) -> None:
        self.exchange = exchange
        self.market = exchange.market
        self.now_ms = now_ms or exchange.server_time_ms  # decides which candle is still forming
        self.progress = progress

    def _page(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        method = "futures_klines" if self.market == "futures" else "get_klines"
        return self.exchange.call(method, symbol=symbol, interval=interval, startTime=start_ms, endTime=end_ms, limit=PAGE_LIMIT)

    def fetch(self, symbol: str, interval: str, interval_ms: int, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        """All closed candles with ``start_ms <= open_time < end_ms`` (``end_ms`` None = now)."""
        now = self.now_ms()
        end_ms = now if end_ms is None else min(end_ms, now)
        rows: list[list[Any]] = []
        cursor = start_ms
        total = max(1, -(-(end_ms - start_ms) // (interval_ms * PAGE_LIMIT)))
        with tqdm(total=total, desc=f"fetch {symbol} {interval}", unit="page", disable=None if self.progress else True) as bar:
            while cursor < end_ms:
                page = self._page(symbol, interval, cursor, end_ms - 1)
                bar.update(1)
                if not page:
                    break
                rows.extend(page)
                nxt = int(page[-1][0]) + interval_ms
                if nxt <= cursor:
                    break
                cursor = nxt
                if len(page) < PAGE_LIMIT:
                    break
        df = klines_from_rows(rows) if rows else empty_klines()
        df = df[df["open_time"].astype("int64") < end_ms]
        return drop_forming(df, now, interval_ms)


def fetch_binance_incremental(
    fetcher: BinanceKlines,
    symbol: str,
    interval: str,
    interval_ms: int,
    start_ms: int,
    end_ms: int | None,
    existing: pd.DataFrame | None,
) -> pd.DataFrame:
    """Download only what ``existing`` lacks: candles after its last one (and before its first,
    if ``start_ms`` moved earlier). Returns existing + new rows, unvalidated."""
    if existing is None or existing.empty:
        return fetcher.fetch(symbol, interval, interval_ms, start_ms, end_ms)
    first = int(existing["open_time"].iloc[0].value // 1_000_000)
    last = int(existing["open_time"].iloc[-1].value // 1_000_000)
    parts = [existing[existing["open_time"].astype("int64") >= start_ms]]
    if start_ms < first:
        parts.insert(0, fetcher.fetch(symbol, interval, interval_ms, start_ms, first))
    parts.append(fetcher.fetch(symbol, interval, interval_ms, last + interval_ms, end_ms))
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    if end_ms is not None:
        out = out[out["open_time"].astype("int64") < end_ms]
    return out


# --------------------------------------------------------------------------- entry point
def read_existing(path: Path) -> pd.DataFrame | None:
    """The candles already downloaded at ``path`` (None if there are none)."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is unreadable ({type(e).__name__}): delete it and run fetch again to download it afresh") from None


def get_candles(data: DataParams, existing: pd.DataFrame | None = None, fetcher: BinanceKlines | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load candles as ``data`` says and validate them. Returns (klines, quality summary)."""
    if data.source == "sample":
        df = load_sample(data.symbol, data.interval)
    elif data.source == "file":
        df = read_kline_files(data.files)
    else:
        fetcher = fetcher or BinanceKlines(ExchangeClient(market=data.market))
        df = fetch_binance_incremental(
            fetcher, data.symbol, data.interval, data.interval_ms,
            to_ms(data.start), to_ms(data.end) if data.end else None, existing,
        )
    if data.source != "binance":
        if data.start:
            df = df[df["open_time"] >= utc(data.start)]
        if data.end:
            df = df[df["open_time"] < utc(data.end)]
    df, quality = validate(df.reset_index(drop=True), data.interval_ms, data.gap_policy)
    quality = {"source": data.source, "symbol": data.symbol, "interval": data.interval, **quality}
    return df, quality

