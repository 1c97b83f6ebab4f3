"""The derivatives features' inputs, joined onto candles point-in-time: the one join the preprocess
stage (and the walk-forward folds, the holdout) and the live bot use (:func:`join_inputs`).

A value joins a candle's row only if Binance had published it by the candle's close
(``close_ms = open_time + interval - 1``, Binance's ``close_time``), never earlier:

- **Funding** (:data:`FUNDING_RATE`, :data:`FUNDING_PREV`): the last settlement with
  ``funding_time_raw <= close_ms``, i.e. the rate as Binance stamps it, with its millisecond jitter:
  a settlement at 08:00:00.023 is not known at the close of the 07:00 candle (07:59:59.999) but at
  the close of the 08:00 candle. ``FUNDING_PREV`` is the settlement before that one. Fractions per
  settlement (``0.0001`` = 0.01 %).
- **Mark and spot candles** (:data:`MARK_CLOSE`, :data:`SPOT_CLOSE`, :data:`PERP_CLOSE`): the close
  of the candle with the same open time (known at its close, like the candle itself), USDT; NaN where
  that candle is missing (never filled from a neighbour).
- **Metrics** (:data:`OI_VALUE`): the last row with ``create_time + lag <= close_ms``, where ``lag``
  (:data:`METRICS_LAG_MS` by default, ``features.metrics_lag`` minutes) is the publication lag.
  Binance documents neither for the dumps' ``create_time`` nor for ``/futures/data/openInterestHist``'s
  ``timestamp`` (its Open-Interest-Statistics page) whether it stamps the start or the end of the
  5-minute period, nor how soon a row is served, so the default lag assumes the start: a row is
  usable one period (5 min) after its stamp. The daily dump file itself appears only after its day
  ends; the live bot reads the rows from ``openInterestHist``, so the dump's delay is not what the
  traded model meets. Set ``features.metrics_lag`` to 1440 (a day) to model a bot that reads the
  dumps, or higher if the REST rows prove to come later than 5 minutes.
  ``sum_open_interest_value``, USDT.

Units: fractions and USDT as above; times epoch ms (UTC) unless a pandas time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from mlrisk.errors import DataError
from mlrisk.features import (DERIVATIVES, FUNDING_PREV, FUNDING_RATE, MARK_CLOSE, METRICS_LAG_MINUTES, OI_VALUE, PERP_CLOSE,
                             SPOT_CLOSE)

if TYPE_CHECKING:
    from mlrisk.config.data import DataParams
    from mlrisk.config.features import FeatureParams

Loader = Callable[[], pd.DataFrame]  # reads one input table

METRICS_STEP_MS = 300_000  # Binance's metrics rows (dumps and openInterestHist period 5m) come every 5 minutes
METRICS_LAG_MS = METRICS_LAG_MINUTES * 60_000  # default publication lag of a metrics row after its create_time (see above)

def tables_needed(names: list[str]) -> set[str]:
    """The input tables (``funding``, ``mark``, ``spot``, ``perp``, ``metrics``) that the feature
    ``names`` need (the traded symbol's own features only; none for candle-only features)."""
    return {t for n in names if n in DERIVATIVES for t in DERIVATIVES[n][2]}


def close_ms(open_time: pd.Series, interval_ms: int) -> np.ndarray:
    """Each candle's close, epoch ms: ``open_time + interval_ms - 1`` (Binance's ``close_time``)."""
    return pd.DatetimeIndex(open_time).as_unit("ms").asi8 + interval_ms - 1


def _ms(col: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(col).as_unit("ms").asi8


def _asof(known_ms: np.ndarray, at_ms: np.ndarray, k: int = 0) -> np.ndarray:
    """Index of the ``k``-th last entry of ``known_ms`` (sorted) known at each ``at_ms``
    (``known <= at``), -1 where there is none."""
    i = np.searchsorted(known_ms, at_ms, side="right") - 1 - k
    return np.where(i >= 0, i, -1)


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out = np.full(len(idx), np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def same_open(open_time: pd.Series | pd.DatetimeIndex, table: pd.DataFrame, cols: list[str], what: str) -> pd.DataFrame:
    """The one "same open time" join: ``table``'s ``cols`` (float64) at the candles opening at
    ``open_time`` (UTC), one row each in that order, NaN where ``table`` has no candle opening then.
    Two rows of ``table`` with one open time are bad data: a one-line :class:`DataError` naming
    ``what`` (e.g. ``mark``)."""
    t = pd.DatetimeIndex(table["open_time"])
    dup = t.duplicated()
    if dup.any():
        raise DataError(f"the {what} candles have {int(dup.sum())} duplicate open time(s) (first {t[dup][0]}): bad data; "
                        "re-run `dvc repro fetch`")
    out = table[cols].set_axis(t).reindex(pd.DatetimeIndex(open_time)).astype("float64")
    return out.reset_index(drop=True)


def _same_open(open_time: pd.Series, table: pd.DataFrame, what: str) -> np.ndarray:
    return same_open(open_time, table, ["close"], what)["close"].to_numpy()


def join_inputs(candles: pd.DataFrame, interval_ms: int, *, funding: pd.DataFrame | None = None,
                mark: pd.DataFrame | None = None, spot: pd.DataFrame | None = None, perp: pd.DataFrame | None = None,
                metrics: pd.DataFrame | None = None, metrics_lag_ms: int = METRICS_LAG_MS) -> pd.DataFrame:
    """A copy of ``candles`` with the input columns of the tables given (see the module docstring):
    ``funding`` (the funding table of :mod:`mlrisk.data.derivatives`) -> :data:`FUNDING_RATE`,
    :data:`FUNDING_PREV`; ``mark`` (mark klines) -> :data:`MARK_CLOSE`; ``spot`` / ``perp`` (kline
    tables; None where ``candles`` are that market's, whose own close is then used) ->
    :data:`SPOT_CLOSE` / :data:`PERP_CLOSE`; ``metrics`` -> :data:`OI_VALUE`. ``candles``' rows and
    index are kept."""
    out = candles.copy()
    ot = candles["open_time"]
    at = close_ms(ot, interval_ms)
    if funding is not None:
        f = funding.sort_values("funding_time_raw", kind="stable")
        known, rates = _ms(f["funding_time_raw"]), f["funding_rate"].to_numpy(dtype="float64")
        out[FUNDING_RATE] = _take(rates, _asof(known, at))
        out[FUNDING_PREV] = _take(rates, _asof(known, at, 1))
    if mark is not None:
        out[MARK_CLOSE] = _same_open(ot, mark, "mark")
    if spot is not None:
        out[SPOT_CLOSE] = _same_open(ot, spot, "spot")
    if perp is not None:
        out[PERP_CLOSE] = _same_open(ot, perp, "perp")
    if metrics is not None:
        m = metrics.sort_values("create_time", kind="stable")
        known = _ms(m["create_time"]) + metrics_lag_ms
        out[OI_VALUE] = _take(m["sum_open_interest_value"].to_numpy(dtype="float64"), _asof(known, at))
    return out


def with_inputs(candles: pd.DataFrame, names: list[str], interval_ms: int, *, kind: str, market: str,
                load: dict[str, Loader], metrics_lag_ms: int = METRICS_LAG_MS) -> pd.DataFrame:
    """``candles`` (of market ``kind``: ``perp`` or ``spot``) with the inputs that ``names`` need,
    each table read by ``load[table]()`` only when needed (the pipeline reads ``data/raw``, the live
    bot the exchange). A table the run lacks is a one-line :class:`DataError` saying what to set.
    Where ``candles`` are the perpetual's, their close is :data:`PERP_CLOSE` (and the spot
    candles' for spot)."""
    need = tables_needed(names)
    if not need:
        return candles
    if market != "futures":
        feats = sorted(n for n in names if n in DERIVATIVES)
        raise DataError(f"features {', '.join(feats)} need the perpetual's data: set data.market: futures "
                        "(the fetch stage then writes the funding history, mark and spot candles beside the candles)")
    tables: dict[str, pd.DataFrame | None] = {}
    for t in sorted(need):
        if t == kind:
            continue
        if t not in load:
            raise DataError(f"features need the {t} data, which this run does not have")
        tables[t] = load[t]()
    out = join_inputs(candles, interval_ms, metrics_lag_ms=metrics_lag_ms, **tables)
    if kind in need:  # the candles' own market: its close is that column
        out[PERP_CLOSE if kind == "perp" else SPOT_CLOSE] = candles["close"].to_numpy(dtype="float64")
    return out


def raw_loaders(raw_dir: str | Path, symbol: str, interval: str) -> dict[str, Loader]:
    """Readers of the tables the fetch stage wrote in ``raw_dir`` for a futures run
    (:func:`mlrisk.data.derivatives.raw_tables`), each a one-line :class:`DataError` naming what to do
    when its file is absent: the features need it."""
    from mlrisk.data.derivatives import funding_path, mark_path, metrics_path, raw_tables, spot_path

    tables = raw_tables(raw_dir, symbol, interval)
    missing = {
        "perp": (Path(raw_dir) / f"{symbol}-{interval}.parquet", "run `dvc repro fetch`"),
        "spot": (spot_path(raw_dir, symbol, interval), "spot candles are fetched beside a futures run's (data.source "
                 "sample or binance; for source file add spot kline dumps under a spot/ folder in data.files), then "
                 "`dvc repro fetch`"),
        "metrics": (metrics_path(raw_dir, symbol), "log_open_interest_change needs the metrics dumps (data.source file "
                    "with SYMBOL-metrics-YYYY-MM-DD.zip files in data.files); drop it from features.names otherwise"),
        "funding": (funding_path(raw_dir, symbol), "funding_rate and funding_change need the funding history "
                    "(data.market: futures; for source file list the fundingRate dumps in data.files), then `dvc repro fetch`"),
        "mark": (mark_path(raw_dir, symbol, interval), "basis_mark needs the mark-price candles (data.market: futures; "
                 "for source file list markPriceKlines dumps in data.files), then `dvc repro fetch`"),
    }

    def loader(name: str) -> Loader:
        def load() -> pd.DataFrame:
            df = tables[name]()
            if df is None:
                path, what = missing[name]
                raise DataError(f"{path} not found: {what}")
            return df
        return load

    return {name: loader(name) for name in missing}


def model_candles(raw_dir: str | Path, d: DataParams, fp: FeatureParams) -> pd.DataFrame:
    """The candles the model learns on, from the fetch stage's ``raw_dir``, with the inputs its
    features need joined point-in-time: ``features.candles: traded`` = ``data.market``'s candles
    (``{SYMBOL}-{INTERVAL}.parquet``), ``spot`` = the spot candles fetched beside a futures run's
    (:func:`mlrisk.data.derivatives.spot_path`). Labels follow these candles."""
    from mlrisk.io import read_parquet

    load = raw_loaders(raw_dir, d.symbol, d.interval)
    if fp.candles == "spot" and d.market != "futures":
        raise DataError("features.candles: spot is for a futures run (data.market: futures); on a spot run the traded "
                        "candles are the spot candles: use features.candles: traded")
    if fp.candles == "spot":
        candles, kind = load["spot"](), "spot"
    else:
        candles = read_parquet(Path(raw_dir) / f"{d.symbol}-{d.interval}.parquet", "run `dvc repro fetch`")
        kind = "perp" if d.market == "futures" else "spot"
    return with_inputs(candles, fp.names, d.interval_ms, kind=kind, market=d.market, load=load,
                       metrics_lag_ms=fp.metrics_lag * 60_000)
