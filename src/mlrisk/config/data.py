"""The ``data`` section: where the candles come from (``fetch`` stage; symbol and interval for every stage after)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section, check_date, date_as_str
from mlrisk.features import SYMBOL
from mlrisk.times import INTERVAL_MS, INTERVALS, candles_per_day, utc


class DataParams(_Section):
    """Where the candles come from (``fetch`` stage)."""

    source: Literal["sample", "binance", "file"] = "sample"
    symbol: str = Field("BTCUSDT", min_length=1, pattern=r"^[A-Z0-9]{2,30}$")
    interval: Literal[INTERVALS] = "1h"  # type: ignore[valid-type]
    market: Literal["spot", "futures"] = "spot"
    start: str | None = None
    end: str | None = None
    files: list[str] = Field(default_factory=list)
    others: list[str] = Field(default_factory=list)  # other symbols fetched alongside (binance source), for SYMBOL:feature names
    gap_policy: Literal["error", "keep", "ffill"] = "ffill"
    max_fill: int | None = Field(None, ge=0, le=100_000)  # ffill: longest gap filled, candles; None = one day

    _dates = field_validator("start", "end")(check_date)
    _dates_as_str = field_validator("start", "end", mode="before")(date_as_str)

    @model_validator(mode="after")
    def _source_needs(self) -> "DataParams":
        for sym in self.others:
            if not SYMBOL.fullmatch(sym) or sym == self.symbol:
                raise ValueError(f"data.others: {sym!r} is not another symbol like ETHUSDT")
        if self.others and self.source != "binance":
            raise ValueError(f"data.others ({', '.join(self.others)}) needs data.source 'binance': the sample ships "
                             "BTCUSDT only and dump files name one symbol")
        if self.source == "file" and not self.files:
            raise ValueError("data.source 'file' needs data.files: a list of Binance kline CSV/zip paths")
        if self.source == "binance" and self.start is None:
            raise ValueError("data.source 'binance' needs data.start (UTC date, e.g. 2023-01-01)")
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"data.start ({self.start}) must be before data.end ({self.end})")
        return self

    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.interval]

    @property
    def max_fill_candles(self) -> int:
        """The longest gap ``ffill`` fills, in candles (``max_fill``, or one day of candles)."""
        return self.max_fill if self.max_fill is not None else candles_per_day(self.interval_ms)
