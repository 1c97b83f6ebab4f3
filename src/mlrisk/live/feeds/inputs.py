"""The live bot's feature window with the derivatives features' inputs (:class:`WindowInputs`): the
funding history, mark-price and spot klines and open interest for the window's times, read from the
exchange through the venue layer and joined onto the candles by
:func:`mlrisk.data.point_in_time.with_inputs`, the pipeline's join, so the features are computed
with the same code and the same point-in-time rule. Times are epoch ms (UTC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlrisk.data.point_in_time import tables_needed, with_inputs
from mlrisk.errors import DataError

#: funding history read before the window's first candle: two settlements are known there even on
#: an 8 h schedule (funding_change needs the one before the last)
FUNDING_LOOKBACK_MS = 3 * 86_400_000


class ExchangeReads:
    """The inputs from the exchange: ``futures`` a :class:`~mlrisk.live.venue.FuturesVenue` (funding
    history, mark klines, open interest; a public client is enough), ``spot`` an
    :class:`~mlrisk.exchange.ExchangeClient` on the spot host (the symbol's spot klines), either None
    where the bot has none."""

    def __init__(self, symbol: str, futures: Any = None, spot: Any = None) -> None:
        self.symbol, self.futures, self.spot = symbol, futures, spot

    def _need(self, what: Any, name: str) -> Any:
        if what is None:
            raise DataError(f"the model's features need {name}, which a spot bot does not read: trade it on futures")
        return what

    def funding_history(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._need(self.futures, "the funding history").funding_history(start_ms, end_ms)

    def mark_klines(self, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._need(self.futures, "mark-price klines").mark_klines(interval, start_ms, end_ms)

    def open_interest(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._need(self.futures, "open interest").open_interest(start_ms, end_ms)

    def spot_klines(self, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Closed spot candles with ``start_ms <= open_time < end_ms``, gaps kept (a spot halt), as the
        fetch stage keeps them (:class:`WindowInputs` makes no decision on a window holding one)."""
        from mlrisk.data.sources import BinanceKlines
        from mlrisk.times import INTERVAL_MS

        spot = self._need(self.spot, "spot klines")
        return BinanceKlines(spot, progress=False).fetch(self.symbol, interval, INTERVAL_MS[interval], start_ms, end_ms)


class InputMissing(DataError):
    """A derivatives input (or a spot candle the model learns on) of the window is not there: a candle
    not served yet at the close, or a spot halt. The bot makes no decision on that candle and journals
    :attr:`note` (``kind`` ``input_missing``, ``open_ms``, ``inputs``: the missing inputs, ``candles``:
    the open times, epoch ms, of the window's rows that lack one)."""

    def __init__(self, open_ms: int, inputs: list[str], candles: list[int]) -> None:
        super().__init__(f"inputs {', '.join(inputs)} missing for the window of candle {open_ms}")
        self.note = {"kind": "input_missing", "open_ms": open_ms, "inputs": inputs, "candles": candles}


class RawReads:
    """The inputs from the fetch stage's tables in ``raw_dir`` (``data/raw``), each read once and cut
    to the times asked: a replay decides on the pipeline's own data."""

    def __init__(self, raw_dir: Any, symbol: str, interval: str) -> None:
        from mlrisk.data.point_in_time import raw_loaders

        self._load = raw_loaders(raw_dir, symbol, interval)
        self._tables: dict[str, pd.DataFrame] = {}

    def _cut(self, name: str, col: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        if name not in self._tables:
            self._tables[name] = self._load[name]()
        df = self._tables[name]
        t = pd.DatetimeIndex(df[col]).as_unit("ms").asi8
        return df[(t >= start_ms) & (t < end_ms)].reset_index(drop=True)

    def funding_history(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._cut("funding", "funding_time_raw", start_ms, end_ms)

    def mark_klines(self, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._cut("mark", "open_time", start_ms, end_ms)

    def open_interest(self, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._cut("metrics", "create_time", start_ms, end_ms)

    def spot_klines(self, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        return self._cut("spot", "open_time", start_ms, end_ms)


class WindowInputs:
    """Turns the traded candles of a window into the frame the model's features read.

    ``names``: the model's features; ``candles``: ``traded`` or ``spot`` (the spec's
    ``features.candles``); ``market``: the market the bot trades; ``reads``: where the inputs come
    from (:class:`ExchangeReads`, or anything with its four methods)."""

    def __init__(self, names: list[str], candles: str, market: str, interval: str, interval_ms: int,
                 metrics_lag_ms: int, reads: Any) -> None:
        self.names, self.candles, self.market = list(names), candles, market
        self.interval, self.interval_ms, self.metrics_lag_ms = interval, interval_ms, metrics_lag_ms
        self.reads = reads

    @property
    def needed(self) -> bool:
        """Whether the window needs anything beyond the traded candles."""
        return bool(tables_needed(self.names)) or self.candles == "spot"

    def __call__(self, hist: pd.DataFrame) -> pd.DataFrame:
        """``hist``: the traded closed candles of the window, oldest first. Returns the candles the
        model learns on (the traded ones, or the spot candles with the same open times) with the
        inputs its features need joined point-in-time (each input read only when needed).

        Raises :class:`InputMissing` when a row of the window lacks an input (the pipeline drops
        such windows: :func:`mlrisk.data.preprocess.build_dataset`)."""
        if not self.needed:
            return hist
        out = self._join(hist)
        t = pd.DatetimeIndex(hist["open_time"]).as_unit("ms").asi8
        cols = [c for c in out.columns if c.startswith("pit_")]
        bad = ~np.isfinite(out[cols].to_numpy(dtype="float64"))
        missing = [c.removeprefix("pit_") for j, c in enumerate(cols) if bad[:, j].any()]
        if self.candles == "spot" and (len(out) != len(hist) or (out["open_time"].to_numpy() != hist["open_time"].to_numpy()).any()):
            have = set(pd.DatetimeIndex(out["open_time"]).as_unit("ms").asi8.tolist())
            rows = [int(x) for x in t if int(x) not in have]
            raise InputMissing(int(t[-1]), ["spot_candle"] + missing, rows)
        if missing:
            raise InputMissing(int(t[-1]), missing, [int(x) for x in t[bad.any(axis=1)]])
        return out

    def _join(self, hist: pd.DataFrame) -> pd.DataFrame:
        t = pd.DatetimeIndex(hist["open_time"]).as_unit("ms").asi8
        start, end = int(t[0]), int(t[-1]) + self.interval_ms
        r, lag = self.reads, self.metrics_lag_ms
        load: dict[str, Callable[[], pd.DataFrame]] = {
            "perp": lambda: hist,
            "funding": lambda: r.funding_history(start - FUNDING_LOOKBACK_MS, end),
            "mark": lambda: r.mark_klines(self.interval, start, end),
            "metrics": lambda: r.open_interest(start - lag - 2 * self.interval_ms, end),
            "spot": lambda: r.spot_klines(self.interval, start, end),
        }
        if self.market != "futures":
            if self.candles == "spot":
                raise DataError("the model learns on spot candles beside a perpetual (features.candles: spot): trade "
                                "it on futures (MLRISK_MARKET futures)")
            return with_inputs(hist, self.names, self.interval_ms, kind="spot", market=self.market, load=load,
                               metrics_lag_ms=lag)
        if self.candles == "spot":
            base = load["spot"]()
            if len(base) == 0:  # no spot candle at all: InputMissing in __call__
                return base
            return with_inputs(base, self.names, self.interval_ms, kind="spot", market=self.market, load=load,
                               metrics_lag_ms=lag)
        return with_inputs(hist, self.names, self.interval_ms, kind="perp", market=self.market, load=load,
                           metrics_lag_ms=lag)
