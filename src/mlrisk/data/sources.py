"""Candle sources for the ``fetch`` stage: the shipped sample, Binance (python-binance), or files.

Every source returns a kline table (see :mod:`mlrisk.data.klines`) that the caller validates.
The Binance source pages through the 1000-candle limit itself so that each page is retried on
its own (by :class:`mlrisk.exchange.ExchangeClient`: backoff on network errors and 5xx,
``Retry-After`` on 429/418, no API key sent), and a candle still forming at download time
(close time on the exchange's clock in the future) is never kept.

With ``data.market: futures`` the candles are the perpetual's, and :func:`get_derivatives` (funding
history, mark-price klines) and :func:`get_metrics` (the dumps' open interest and long/short
ratios) give the tables stored beside them (schema and loaders: :mod:`mlrisk.data.derivatives`).
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mlrisk.errors import DataError
from mlrisk.io import parquet_metadata
from mlrisk.data import derivatives as dv
from mlrisk.data.klines import KLINE_COLUMNS, cut, drop_forming, empty_klines, klines_from_rows, normalise, validate
from mlrisk.exchange import ExchangeClient
from mlrisk.times import from_ms, to_ms

if TYPE_CHECKING:
    from mlrisk.config.data import DataParams

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
# Binance public-data names: BTCUSDT-1h-2024-01.zip (monthly), BTCUSDT-1h-2024-01-15.zip (daily)
DUMP_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]{2,30})-(?P<interval>\d+[smhdwM]|1mo)-\d{4}-\d{2}(-\d{2})?\.(csv|zip)$")


def check_dump_name(name: str, symbol: str, interval: str, where: str) -> None:
    """Raise :class:`DataError` when a Binance dump's file name names another symbol or interval."""
    m = DUMP_NAME.match(Path(name).name)
    if m and (m["symbol"], m["interval"]) != (symbol, interval):
        raise DataError(f"{where}: the file name says {m['symbol']} {m['interval']} but data.symbol/data.interval are "
                        f"{symbol} {interval}: list the right files or change data.symbol/data.interval")


def read_kline_file(path: str | Path, symbol: str | None = None, interval: str | None = None) -> pd.DataFrame:
    """Read one Binance public-data kline dump: CSV or a zip holding one CSV.

    With or without a header line; timestamps in milliseconds or microseconds (judged per row).
    With ``symbol``/``interval``, a Binance dump name (``BTCUSDT-1h-2024-01.zip``, also the CSV's
    name inside a zip) that names others is an error. The result has a ``line`` column (the
    file line of each row) for error messages; :func:`read_kline_files` drops it.
    """
    path = Path(path)
    text, inner = dv.read_dump_text(path)
    if symbol and interval:
        check_dump_name(path.name, symbol, interval, str(path))
        if inner:
            check_dump_name(inner, symbol, interval, f"{path} (holds {inner})")
    if not text.strip():
        raise DataError(f"{path}: empty file")
    lines = text.strip("\n").split("\n")
    first = lines[0]
    has_header = not first.split(",")[0].strip().lstrip("-").isdigit()
    if len(lines) > 1 + has_header and lines[-1].count(",") < lines[-2].count(","):
        raise DataError(f"{path}: line {len(lines)} has {lines[-1].count(',') + 1} fields, the line before "
                        f"{lines[-2].count(',') + 1}: the file is truncated: download it again")
    try:
        # a blank line inside the data is a row of blank cells (an error naming its line), not skipped
        raw = pd.read_csv(io.StringIO(text.strip("\n") + "\n"), header=0 if has_header else None, dtype=str, skip_blank_lines=False)
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
    first_line = 2 if has_header else 1
    try:
        df = normalise(raw, first_line=first_line)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    df["line"] = np.arange(len(df)) + first_line
    return df


def read_kline_files(paths: list[str], symbol: str | None = None, interval: str | None = None) -> pd.DataFrame:
    """Read and join kline dumps (see :func:`read_kline_file`). Rows repeated exactly (overlapping
    downloads) are left for :func:`validate` to drop; two different candles for one open time are
    an error naming both files, their lines and the time."""
    frames = [read_kline_file(p, symbol, interval).assign(file=i) for i, p in enumerate(paths)]
    df = pd.concat(frames, ignore_index=True)
    cols = [c for c in KLINE_COLUMNS if c in df.columns]
    distinct = df[~df.duplicated(cols)]
    clash = distinct.duplicated("open_time", keep=False)
    if clash.any():
        t = distinct.loc[clash, "open_time"].iloc[0]
        a, b = distinct[clash & (distinct["open_time"] == t)].iloc[:2].itertuples()
        raise DataError(f"two different candles for open time {t}: {paths[a.file]} line {a.line} and {paths[b.file]} "
                        f"line {b.line}; are both files the same symbol, interval and market? remove the wrong one")
    return df.drop(columns=["line", "file"])


# --------------------------------------------------------------------------- binance
class BinanceKlines:
    """Downloads closed klines through an :class:`~mlrisk.exchange.ExchangeClient` (which retries
    each page). ``now_ms`` is injectable for tests; by default the exchange's clock."""

    method: str | None = None  # the python-binance method; None: the market's kline endpoint

    def __init__(self, exchange: ExchangeClient, now_ms: Callable[[], int] | None = None, progress: bool = True) -> None:
        self.exchange = exchange
        self.market = exchange.market
        self.now_ms = now_ms or exchange.server_time_ms  # decides which candle is still forming
        self.progress = progress

    def _page(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        method = self.method or ("futures_klines" if self.market == "futures" else "get_klines")
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
                if not page and cursor < end_ms - 2 * interval_ms:
                    # an empty answer well before the end: ask once more before believing it
                    page = self._page(symbol, interval, cursor, end_ms - 1)
                    if not page:
                        log.warning("Binance has no %s %s candles from %s to %s", symbol, interval, from_ms(cursor), from_ms(end_ms))
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


class BinanceMarkKlines(BinanceKlines):
    """Closed mark-price klines (``/fapi/v1/markPriceKlines``, the kline layout with "0" volume;
    limit max 1500, paged at 1000 like the klines), in the mark schema of
    :mod:`mlrisk.data.derivatives`."""

    method = "futures_mark_price_klines"

    def fetch(self, symbol: str, interval: str, interval_ms: int, start_ms: int, end_ms: int | None = None) -> pd.DataFrame:
        return dv.to_mark(super().fetch(symbol, interval, interval_ms, start_ms, end_ms))


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
    if ``start_ms`` moved earlier). Returns existing + new rows cut to ``[start_ms, end_ms)``,
    unvalidated. ``existing`` must come from the same source, symbol, interval and market (see
    :func:`read_existing`)."""
    if existing is None or existing.empty:
        out = fetcher.fetch(symbol, interval, interval_ms, start_ms, end_ms)
    else:
        first = int(existing["open_time"].iloc[0].value // 1_000_000)
        last = int(existing["open_time"].iloc[-1].value // 1_000_000)
        parts = [existing]
        if start_ms < first:
            parts.insert(0, fetcher.fetch(symbol, interval, interval_ms, start_ms, first))
        parts.append(fetcher.fetch(symbol, interval, interval_ms, max(last + interval_ms, start_ms), end_ms))
        out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return cut(out, start_ms, end_ms)


# --------------------------------------------------------------------------- entry point
METADATA_KEY = "mlrisk"


def provenance(data: DataParams) -> dict[str, Any]:
    """What made a candle file (stored in its parquet metadata): source, symbol, interval and
    market, and the gap handling (policy, longest gap filled) that shaped the candles in it."""
    return {"source": data.source, "symbol": data.symbol, "interval": data.interval, "market": data.market,
            "gap_policy": data.gap_policy, "max_fill": data.max_fill_candles}


def read_existing(path: Path, data: DataParams) -> pd.DataFrame | None:
    """The candles already downloaded at ``path`` if the incremental update may extend them: the
    file exists and its metadata says the binance source made it for the same symbol, interval
    and market, with the same gap handling (filled candles are in the file). None otherwise (the
    download starts over; the old file is replaced on success)."""
    if not path.exists():
        return None
    try:
        made_by = parquet_metadata(path, METADATA_KEY)
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} is unreadable ({type(e).__name__}): delete it and run fetch again to download it afresh") from None
    want = provenance(data)
    if made_by != want:
        was = "made by " + ", ".join(f"{k} {v}" for k, v in made_by.items()) if made_by else "without a record of its source"
        log.warning("%s was %s, not %s: downloading afresh", path, was, ", ".join(f"{k} {v}" for k, v in want.items()))
        return None
    return df


def get_candles(data: DataParams, existing: pd.DataFrame | None = None, fetcher: BinanceKlines | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load candles as ``data`` says, cut them to ``[data.start, data.end)`` and validate them.
    Returns (klines, quality summary)."""
    start_ms = to_ms(data.start) if data.start else None
    end_ms = to_ms(data.end) if data.end else None
    if data.source == "sample":
        df = dv.load_futures_sample(data.symbol, data.interval)[0] if data.market == "futures" else load_sample(data.symbol, data.interval)
    elif data.source == "file":
        df = read_kline_files(files_of_kind(data, "klines"), data.symbol, data.interval)
    else:
        fetcher = fetcher or BinanceKlines(ExchangeClient(market=data.market))
        df = fetch_binance_incremental(fetcher, data.symbol, data.interval, data.interval_ms, start_ms, end_ms, existing)
    df = cut(df, start_ms, end_ms)
    if df.empty:
        raise DataError(f"no {data.symbol} {data.interval} candles from {data.source} between data.start ({data.start}) "
                        f"and data.end ({data.end}): check the dates")
    df, quality = validate(df, data.interval_ms, data.gap_policy, data.max_fill)
    quality = {"source": data.source, "symbol": data.symbol, "interval": data.interval, **quality}
    return df, quality


# --------------------------------------------------------------------------- futures: funding and mark price
def files_of_kind(data: DataParams, kind: str) -> list[str]:
    """The ``data.files`` entries holding ``kind`` ("klines", "mark", "funding", "metrics" or "spot"; see
    :func:`mlrisk.data.derivatives.dump_kind`). Mark, funding, metrics or spot dumps need ``data.market: futures``,
    and kline dumps are required."""
    kinds = {f: dv.dump_kind(f) for f in data.files}
    if data.market != "futures":
        extra = [f for f, k in kinds.items() if k != "klines"]
        if extra:
            raise DataError(f"data.files: {extra[0]} is a {kinds[extra[0]]} dump, which only data.market 'futures' reads: "
                            "set data.market: futures or remove it from data.files")
    if not any(k == "klines" for k in kinds.values()):
        raise DataError("data.files lists no kline dumps (only markPriceKlines/fundingRate/metrics ones): add the perpetual's kline dumps")
    return [f for f, k in kinds.items() if k == kind]


def get_derivatives(
    data: DataParams,
    candles: pd.DataFrame,
    existing_funding: pd.DataFrame | None = None,
    existing_mark: pd.DataFrame | None = None,
    exchange: ExchangeClient | None = None,
    now_ms: Callable[[], int] | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any]]:
    """The funding history and mark-price klines for ``data`` (``market: futures``), cut to
    ``[data.start, data.end)`` and validated (see :mod:`mlrisk.data.derivatives`). Returns
    (funding or None, mark klines or None, quality: ``{"funding": ..., "mark": ...}``, None for a
    table the source lacks: file source without such dumps). ``existing_*``: the binance
    source's earlier download (see :func:`read_existing`), extended incrementally. The metrics
    dumps are read by :func:`get_metrics`."""
    start_ms = to_ms(data.start) if data.start else None
    end_ms = to_ms(data.end) if data.end else None
    funding: pd.DataFrame | None
    mark: pd.DataFrame | None
    if data.source == "sample":
        _, mark, funding = dv.load_futures_sample(data.symbol, data.interval)
    elif data.source == "file":
        f_files, m_files = files_of_kind(data, "funding"), files_of_kind(data, "mark")
        funding = dv.read_funding_files(f_files, data.symbol) if f_files else None
        mark = dv.read_mark_files(m_files, data.symbol, data.interval, read_kline_files) if m_files else None
    else:
        exchange = exchange or ExchangeClient(market="futures")
        hours = dv.funding_interval_hours(exchange, data.symbol)
        funding = _funding_incremental(exchange, data.symbol, start_ms, end_ms, hours, existing_funding)
        fetcher = BinanceMarkKlines(exchange, now_ms=now_ms)
        mark = fetch_binance_incremental(fetcher, data.symbol, data.interval, data.interval_ms, start_ms, end_ms, existing_mark)
    quality: dict[str, Any] = {"funding": None, "mark": None}
    if funding is not None:
        funding = cut(funding, start_ms, end_ms, column="funding_time")
        if funding.empty:
            raise DataError(f"no {data.symbol} funding settlements from {data.source} between data.start ({data.start}) and "
                            f"data.end ({data.end}): check the dates (and the fundingRate dumps listed)")
        funding, quality["funding"] = dv.validate_funding(funding)
    if mark is not None:
        mark = cut(mark, start_ms, end_ms)
        if mark.empty:
            raise DataError(f"no {data.symbol} {data.interval} mark-price candles from {data.source} between data.start "
                            f"({data.start}) and data.end ({data.end}): check the dates (and the markPriceKlines dumps listed)")
        mark, mq = dv.validate_mark(mark, data.interval_ms)
        quality["mark"] = {**mq, "candles_without_mark": dv.mark_coverage(candles, mark)}
    return funding, mark, quality


def get_spot(data: DataParams, perp: pd.DataFrame, existing: pd.DataFrame | None = None,
             fetcher: BinanceKlines | None = None) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """The spot candles of a futures run's symbol and interval over the perpetual candles' window
    (``data.start``/``data.end``, else the first to the last perp candle), validated with gaps kept
    (counted, never filled: spot has halts the perp traded through): the shipped spot sample (source
    sample), spot klines from Binance (source binance; ``existing`` extended incrementally) or the
    spot kline dumps inside a ``spot/`` folder in ``data.files`` (source file; (None, None) when
    none are listed, and, source binance, when Binance has no spot market of that name: a
    perpetual-only symbol). Quality: the validation's counts and the perp-over-spot basis of the closes
    (:func:`basis_bps`)."""
    start_ms = to_ms(data.start) if data.start else int(perp["open_time"].iloc[0].value // 1_000_000)
    end_ms = to_ms(data.end) if data.end else int(perp["open_time"].iloc[-1].value // 1_000_000) + data.interval_ms
    if data.source == "sample":
        df = load_sample(data.symbol, data.interval)
    elif data.source == "file":
        paths = files_of_kind(data, "spot")
        if not paths:
            return None, None
        df = read_kline_files(paths, data.symbol, data.interval)
    else:
        from mlrisk.exchange import UnknownSymbol

        fetcher = fetcher or BinanceKlines(ExchangeClient(market="spot"))
        try:
            df = fetch_binance_incremental(fetcher, data.symbol, data.interval, data.interval_ms, start_ms, end_ms, existing)
        except UnknownSymbol:  # a perpetual-only symbol: no spot companion, as a file run without spot dumps
            return None, None
    df = cut(df, start_ms, end_ms)
    if df.empty:
        raise DataError(f"no {data.symbol} {data.interval} spot candles from {data.source} between {from_ms(start_ms)} and "
                        f"{from_ms(end_ms)} (the perpetual candles' window): check the dates (and the spot/ dumps listed)")
    df, q = validate(df, data.interval_ms, gap_policy="keep")
    keys = ("rows", "first_candle", "last_candle", "gaps", "missing_candles", "largest_gap_candles", "largest_gap_before",
            "duplicates_dropped")
    return df, {**{k: q[k] for k in keys}, **basis_bps(perp, df)}


def basis_bps(perp: pd.DataFrame, spot: pd.DataFrame) -> dict[str, Any]:
    """The perpetual's close over the spot close at the same open time, ``(perp / spot - 1) * 1e4``
    (basis points; negative: the perp below spot): its median and the count of candles compared (both
    traded: a filled, zero-volume candle on either side is left out)."""
    both = perp[["open_time", "close", "volume"]].merge(spot[["open_time", "close", "volume"]], on="open_time",
                                                        suffixes=("_perp", "_spot"))
    both = both[(both["volume_perp"] > 0) & (both["volume_spot"] > 0)]
    b = (both["close_perp"] / both["close_spot"] - 1.0) * 1e4
    return {"basis_candles": int(len(b)), "median_basis_bps": round(float(b.median()), 3) if len(b) else None}


def _funding_incremental(exchange: ExchangeClient, symbol: str, start_ms: int, end_ms: int | None, hours: int,
                         existing: pd.DataFrame | None) -> pd.DataFrame:
    """Settlements from ``start_ms`` to ``end_ms``: only those ``existing`` lacks are downloaded
    (after its last one; before its first if ``start_ms`` moved earlier)."""
    if existing is None or existing.empty:
        return dv.fetch_funding(exchange, symbol, start_ms, end_ms, hours)
    first = int(existing["funding_time"].iloc[0].value // 1_000_000)
    last_raw = int(existing["funding_time_raw"].iloc[-1].value // 1_000_000)
    parts = [existing]
    if start_ms < first:
        parts.insert(0, dv.fetch_funding(exchange, symbol, start_ms, first, hours))
    parts.append(dv.fetch_funding(exchange, symbol, max(last_raw + 1, start_ms), end_ms, hours))
    return pd.concat([p for p in parts if not p.empty], ignore_index=True)


def get_metrics(data: DataParams) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """The metrics dumps in ``data.files`` (file source, ``market: futures``; open interest and
    long/short ratios, see :mod:`mlrisk.data.derivatives`), cut to ``[data.start, data.end)`` and
    validated; (None, None) where none are listed (Binance's REST history of these is 30 days)."""
    paths = files_of_kind(data, "metrics") if data.source == "file" else []
    if not paths:
        return None, None
    df = dv.read_metrics_files(paths, data.symbol)
    t = df["create_time"].astype("int64")
    keep = pd.Series(True, index=df.index)
    if data.start:
        keep &= t >= to_ms(data.start)
    if data.end:
        keep &= t < to_ms(data.end)
    return dv.validate_metrics(df[keep].reset_index(drop=True))
