"""The perpetual's per-candle inputs of the paper account: the funding rate charged at a candle's open
and its mark-price candle (:class:`~mlrisk.live.sim_account.CandleMarket`), joined onto the candle by
:func:`mlrisk.backtest.futures.market_columns`, the backtest stage's one join, so the paper account and
a replay charge and liquidate exactly as the backtest does.

- :class:`TableInputs` (``mlrisk live --replay``): the funding and mark tables the fetch stage stored
  beside the candles (:mod:`mlrisk.data.derivatives`), joined onto the replayed candles at once.
- :class:`VenueInputs` (paper mode on futures): each closed candle's settlements and mark candle read
  from the exchange (:meth:`mlrisk.live.venue.FuturesVenue.funding_history` and
  :meth:`~mlrisk.live.venue.FuturesVenue.mark_klines`) at its close.

**A settlement not yet visible at the close it belongs to** (the history is read a few seconds after the
settlement at the earliest; Binance stamps it on the hour plus a few ms) is never dropped and never charged
silently late: the account remembers the last settlement it charged (``funding_through_ms``, saved with
its state), and a settlement that shows up later is charged at the open of the candle being processed when
it becomes visible, on the position held into that open, with the rate Binance settled, and the journal
says so (a ``funding_late`` note). Until then the paper account has charged less than the exchange did;
the backtest (and a replay) charges it at its own candle. A mark candle not yet visible at the close leaves
the last price to stand in for that candle (the engine's fallback), noted as ``mark_missing``.

Units: times epoch ms UTC, rates fractions of the notional, prices quote currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlrisk.backtest.futures import market_columns
from mlrisk.data.derivatives import MAX_JITTER_MS
from mlrisk.live.sim_account import CandleMarket


def _mark_row(cols: pd.DataFrame, i: int) -> tuple[float, float, float] | None:
    if "mark_open" not in cols.columns:
        return None
    return (float(cols["mark_open"].iloc[i]), float(cols["mark_high"].iloc[i]), float(cols["mark_low"].iloc[i]))


@dataclass
class TableInputs:
    """The stored tables joined onto ``open_ms`` (the replayed candles' open times, epoch ms) by
    :func:`market_columns`: ``funding`` (the funding table, or None: the constant ``funding_rate``)
    and ``mark`` (mark klines, or None: liquidation on the last price)."""

    open_ms: np.ndarray
    funding: pd.DataFrame | None
    mark: pd.DataFrame | None
    interval_ms: int
    _cols: pd.DataFrame = field(init=False, repr=False)
    _row: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        times = pd.Series(pd.to_datetime(np.asarray(self.open_ms, dtype="int64"), unit="ms", utc=True))
        self._cols = market_columns(times, self.funding, self.mark, self.interval_ms)
        self._row = {int(t): i for i, t in enumerate(np.asarray(self.open_ms, dtype="int64"))}

    @property
    def sources(self) -> dict[str, str]:
        """Which inputs exist: ``funding`` "history"/"constant", ``liquidation`` "mark"/"last"."""
        return {"funding": "constant" if self.funding is None else "history",
                "liquidation": "last" if self.mark is None else "mark"}

    def candle(self, open_ms: int, charged_through_ms: int | None) -> tuple[CandleMarket, int | None, list[dict[str, Any]]]:
        """The inputs of the candle opening at ``open_ms``: (inputs, ``charged_through_ms`` unchanged, no notes)."""
        i = self._row[int(open_ms)]
        rate = float(self._cols["funding_rate"].iloc[i]) if "funding_rate" in self._cols.columns else None
        return CandleMarket(rate, _mark_row(self._cols, i)), charged_through_ms, []


@dataclass
class VenueInputs:
    """Each candle's inputs read from the exchange at its close (``venue``: a
    :class:`~mlrisk.live.venue.FuturesVenue`, public reads only), for ``interval``/``interval_ms`` candles."""

    venue: Any
    interval: str
    interval_ms: int

    sources = {"funding": "history", "liquidation": "mark"}

    def candle(self, open_ms: int, charged_through_ms: int | None) -> tuple[CandleMarket, int | None, list[dict[str, Any]]]:
        """The inputs of the closed candle opening at ``open_ms``, given the time of the last settlement
        already charged (None: none yet). The rate charged at this open is the sum of the settlements
        :func:`market_columns` puts at it (those from the previous candle's open + the jitter allowance to
        this open's) plus any settlement not charged before that became visible only now (see the module
        docstring). Returns (inputs, the new ``charged_through_ms``, journal notes)."""
        iv = self.interval_ms
        end = open_ms + MAX_JITTER_MS  # a settlement from here on belongs to the next candle
        start = open_ms - iv if charged_through_ms is None else charged_through_ms + 1
        funding = self.venue.funding_history(start, end)
        mark = self.venue.mark_klines(self.interval, open_ms, open_ms + iv)
        times = pd.Series(pd.to_datetime([open_ms - iv, open_ms], unit="ms", utc=True))
        cols = market_columns(times, funding, mark, iv)
        rate = float(cols["funding_rate"].iloc[1])
        notes: list[dict[str, Any]] = []
        raw = pd.DatetimeIndex(funding["funding_time_raw"]).as_unit("ms").asi8 if len(funding) else np.empty(0, "int64")
        if charged_through_ms is not None:  # settlements of earlier candles, visible only now: charged here
            late = raw < open_ms - iv + MAX_JITTER_MS
            for t, r in zip(raw[late], funding["funding_rate"].to_numpy()[late]):
                rate += float(r)
                notes.append({"kind": "funding_late", "settlement_ms": int(t), "rate": float(r), "charged_at_ms": open_ms})
        if len(raw):
            charged_through_ms = int(raw.max())
        elif charged_through_ms is None:
            charged_through_ms = open_ms - iv + MAX_JITTER_MS - 1  # nothing before this candle is charged later
        m = _mark_row(cols, 1)
        if m is None or any(np.isnan(m)):
            notes.append({"kind": "mark_missing", "open_ms": open_ms})
        return CandleMarket(rate, m), charged_through_ms, notes
