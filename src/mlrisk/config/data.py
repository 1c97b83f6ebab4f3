"""The ``data`` section: where the candles come from (``fetch`` stage; symbol and interval for every stage after)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section, check_date, date_as_str
from mlrisk.features import SYMBOL
from mlrisk.times import INTERVAL_MS, INTERVALS, candles_per_day, utc


class DataParams(_Section):
    """Where the candles come from (``fetch`` stage)."""

    source: Literal["sample", "binance", "file"] = Field(
        "sample", description="Where the candles come from: sample (the BTCUSDT 1h/15m candles shipped in the package, "
        "offline), binance (downloaded with python-binance, extended incrementally), file (Binance public-data kline "
        "CSV/zip dumps listed in data.files).")
    symbol: str = Field("BTCUSDT", min_length=1, pattern=r"^[A-Z0-9]{2,30}$",
                        description="The traded symbol, Binance spelling (e.g. BTCUSDT).")
    interval: Literal[INTERVALS] = Field(  # type: ignore[valid-type]
        "1h", description="Candle interval, Binance spelling (1m .. 1d); the sample ships 1h and 15m.")
    market: Literal["spot", "futures"] = Field(
        "spot", description="Binance market the candles come from, the instrument the backtest trades: spot or futures "
        "(USDT-M perpetual: its candles, and beside them its funding history, mark-price candles and the spot candles "
        "of the same symbol; the sample ships BTCUSDT 1h of each). A strategy that shorts or uses leverage trades on "
        "futures (the shipped params.yaml sets futures; check_params warns when such a strategy runs on spot).")
    start: str | None = Field(None, description="First candle's UTC date or ISO timestamp (inclusive); required for "
                              "source binance, e.g. 2023-01-01; null = from the first available candle.")
    end: str | None = Field(None, description="UTC date or ISO timestamp the candles end before (exclusive); "
                            "null = up to the last closed candle.")
    files: list[str] = Field(default_factory=list, description="Source file: paths of Binance public-data kline "
                             "CSV/zip files, inside data/files/ (the folder the fetch stage depends on); with market "
                             "futures also fundingRate dumps (SYMBOL-fundingRate-YYYY-MM.zip), mark-price kline dumps "
                             "(inside a markPriceKlines/ folder) and, optionally, the symbol's spot kline dumps (inside "
                             "a spot/ folder).")
    others: list[str] = Field(default_factory=list, description="Other symbols fetched alongside (source binance, same "
                              "interval, market and dates), for feature names like ETHUSDT:close_pct.")
    gap_policy: Literal["error", "keep", "ffill"] = Field(
        "ffill", description="Missing candles: error (stop), keep (windows and labels spanning a gap are dropped) or "
        "ffill (missing candles become flat, zero-volume candles at the previous close).")
    max_fill: int | None = Field(None, ge=0, le=100_000, description="ffill: the longest gap filled, in candles; a "
                                 "longer one is an error; null = one day of candles (24 for 1h).")

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
