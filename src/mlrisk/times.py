"""Candle intervals and UTC times: the one table of interval lengths and the one date parser.

Times are UTC everywhere; epoch values are milliseconds unless a name says otherwise.
"""

from __future__ import annotations

import pandas as pd

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}
INTERVALS = tuple(INTERVAL_MS)
HOUR_MS = 3_600_000
EIGHT_HOURS_MS = 8 * HOUR_MS   # Binance's funding period
YEAR_MS = 365 * 24 * HOUR_MS   # crypto trades every day: annualise on a 365-day year
DAY_MS = 24 * HOUR_MS


def candles_per_day(interval_ms: int) -> int:
    """Candles in one day (24 for 1h, 96 for 15m), at least 1 (for 3d and 1w)."""
    return max(1, DAY_MS // interval_ms)


def utc(date: str | pd.Timestamp) -> pd.Timestamp:
    """A date or ISO timestamp as a UTC ``Timestamp`` (a naive value is taken as UTC).

    Raises ``ValueError`` when ``date`` is not a date."""
    ts = pd.Timestamp(date)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_ms(date: str | pd.Timestamp) -> int:
    """A UTC date/ISO string to epoch milliseconds."""
    return int(utc(date).value // 1_000_000)


def from_ms(ms: int) -> pd.Timestamp:
    """Epoch milliseconds to a UTC ``Timestamp``."""
    return pd.Timestamp(int(ms), unit="ms", tz="UTC")
