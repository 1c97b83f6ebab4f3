"""Per-candle features, computed causally: the row for candle t uses candles <= t only.

This is the one feature function shared by the pipeline and the live bot. Values are unitless
ratios or fractions (not percent). The first :func:`warmup` rows are NaN (not enough history).

The derivatives features (:data:`DERIVATIVES`: funding, basis, open interest) read input columns
that :func:`mlrisk.data.point_in_time.join_inputs` joins onto the candles point-in-time (a value
only from the close at which Binance had published it); the pipeline and the live bot both call it.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pandas as pd



def _upper_wick(c: pd.DataFrame) -> pd.Series:
    return c["high"] / c["close"]  # >= 1: how far the high stretched above the close


def _lower_wick(c: pd.DataFrame) -> pd.Series:
    return c["close"] / c["low"]  # >= 1: how far the close sits above the low


def _close_pct(c: pd.DataFrame) -> pd.Series:
    return c["close"] / c["close"].shift(1) - 1.0


def _volume_pct(c: pd.DataFrame) -> pd.Series:
    v = c["volume"] + 1.0  # +1 keeps zero-volume candles finite
    return v / v.shift(1) - 1.0


def _log_volume_change(c: pd.DataFrame) -> pd.Series:
    v = np.log1p(c["volume"])  # log(volume + 1): a zero-volume candle gives a bounded value
    return v - v.shift(1)


def _hour_angle(c: pd.DataFrame) -> pd.Series:
    t = pd.DatetimeIndex(c["open_time"])
    return pd.Series(2 * np.pi * (t.hour + t.minute / 60) / 24, index=c.index)


def _dow_angle(c: pd.DataFrame) -> pd.Series:
    t = pd.DatetimeIndex(c["open_time"])
    return pd.Series(2 * np.pi * (t.dayofweek + t.hour / 24) / 7, index=c.index)


def _range(c: pd.DataFrame) -> pd.Series:
    return c["high"] / c["low"] - 1.0


def _body(c: pd.DataFrame) -> pd.Series:
    return c["close"] / c["open"] - 1.0


def _taker_buy_share(c: pd.DataFrame) -> pd.Series:
    if "taker_buy_base" not in c.columns:
        raise KeyError("taker_buy_share needs the taker_buy_base column, which this data source lacks")
    vol = c["volume"].to_numpy()
    share = np.divide(c["taker_buy_base"].to_numpy(), vol, out=np.full(len(c), 0.5), where=vol > 0)
    return pd.Series(share, index=c.index)


# input columns joined onto the candles by mlrisk.data.point_in_time.join_inputs (known at the candle's close)
FUNDING_RATE = "pit_funding_rate"  # the last settled funding rate, fraction per settlement (positive: longs pay)
FUNDING_PREV = "pit_funding_prev"  # the settled rate before it, fraction
MARK_CLOSE = "pit_mark_close"  # the mark-price candle's close (same open time), USDT
SPOT_CLOSE = "pit_spot_close"  # the spot candle's close (same open time), USDT
PERP_CLOSE = "pit_perp_close"  # the perpetual's candle close (same open time), USDT
OI_VALUE = "pit_oi_value"  # open interest value (metrics' sum_open_interest_value) known at the close, USDT
INPUT_COLUMNS = [FUNDING_RATE, FUNDING_PREV, MARK_CLOSE, SPOT_CLOSE, PERP_CLOSE, OI_VALUE]
METRICS_LAG_MINUTES = 5  # default features.metrics_lag: one 5-minute metrics period (mlrisk.data.point_in_time)
_NEEDS_FUTURES = "set data.market: futures (the fetch stage then writes it beside the perpetual's candles)"
_REMEDY = {FUNDING_RATE: f"the funding history: {_NEEDS_FUTURES}", FUNDING_PREV: f"the funding history: {_NEEDS_FUTURES}",
           MARK_CLOSE: f"the mark-price candles: {_NEEDS_FUTURES}", SPOT_CLOSE: f"the spot candles: {_NEEDS_FUTURES}",
           PERP_CLOSE: f"the perpetual's candles: {_NEEDS_FUTURES}",
           OI_VALUE: "open interest: data.market: futures with the metrics dumps in data.files (source file)"}


def _input(c: pd.DataFrame, col: str, feature: str) -> pd.Series:
    if col not in c.columns:
        raise KeyError(f"{feature} needs {_REMEDY[col]}")
    return c[col].astype("float64")


def _funding_rate(c: pd.DataFrame) -> pd.Series:
    return _input(c, FUNDING_RATE, "funding_rate")


def _funding_change(c: pd.DataFrame) -> pd.Series:
    return _input(c, FUNDING_RATE, "funding_change") - _input(c, FUNDING_PREV, "funding_change")


def _basis_spot(c: pd.DataFrame) -> pd.Series:
    return _input(c, PERP_CLOSE, "basis_spot") / _input(c, SPOT_CLOSE, "basis_spot") - 1.0


def _basis_mark(c: pd.DataFrame) -> pd.Series:
    return _input(c, PERP_CLOSE, "basis_mark") / _input(c, MARK_CLOSE, "basis_mark") - 1.0


def _log_oi_change(c: pd.DataFrame) -> pd.Series:
    v = _input(c, OI_VALUE, "log_open_interest_change")
    return np.log(v / v.shift(1))


# USDT-M perpetual features: name -> (function, rows of history needed, input tables it needs)
DERIVATIVES: dict[str, tuple[Callable[[pd.DataFrame], pd.Series], int, tuple[str, ...]]] = {
    # the last funding rate settled by the candle's close (fraction per settlement), and its change from the one before
    "funding_rate": (_funding_rate, 0, ("funding",)),
    "funding_change": (_funding_change, 0, ("funding",)),
    # perp close / spot close - 1 and perp close / mark close - 1 (fractions; candles with the same open time)
    "basis_spot": (_basis_spot, 0, ("perp", "spot")),
    "basis_mark": (_basis_mark, 0, ("perp", "mark")),
    # log change of the open interest value (USDT) known at this close vs at the previous close
    "log_open_interest_change": (_log_oi_change, 1, ("metrics",)),
}


FEATURES: dict[str, tuple[Callable[[pd.DataFrame], pd.Series], int]] = {
    # name: (function, rows of history needed before the first valid value)
    "upper_wick": (_upper_wick, 0),
    "lower_wick": (_lower_wick, 0),
    "close_pct": (_close_pct, 1),
    "volume_pct": (_volume_pct, 1),
    "range": (_range, 0),
    "body": (_body, 0),
    "taker_buy_share": (_taker_buy_share, 0),
    "log_volume_change": (_log_volume_change, 1),
    # the candle's UTC time of day and day of week on the unit circle (known at its open)
    "hour_sin": (lambda c: np.sin(_hour_angle(c)), 0),
    "hour_cos": (lambda c: np.cos(_hour_angle(c)), 0),
    "dow_sin": (lambda c: np.sin(_dow_angle(c)), 0),
    "dow_cos": (lambda c: np.cos(_dow_angle(c)), 0),
}


def _log_return(c: pd.DataFrame, n: int) -> pd.Series:
    """log(close_t / close_{t-n})."""
    return np.log(c["close"] / c["close"].shift(n))


def _realised_vol(c: pd.DataFrame, n: int) -> pd.Series:
    """Standard deviation of the last ``n`` one-candle log returns (not annualised)."""
    return np.log(c["close"] / c["close"].shift(1)).rolling(n, min_periods=n).std(ddof=1)


def _volume_z(c: pd.DataFrame, n: int) -> pd.Series:
    """z-score of log(volume + 1) against the last ``n`` candles (the current one included)."""
    v = np.log1p(c["volume"])
    roll = v.rolling(n, min_periods=n)
    return (v - roll.mean()) / roll.std(ddof=1)


# parameterised families: name_<N> with N candles of lookback -> (function of (candles, N), warmup(N))
FAMILIES: dict[str, tuple[Callable[[pd.DataFrame, int], pd.Series], Callable[[int], int], int]] = {
    # family: (function, rows of history needed, smallest N)
    "log_return": (_log_return, lambda n: n, 1),
    "realised_vol": (_realised_vol, lambda n: n, 2),
    "volume_z": (_volume_z, lambda n: n - 1, 2),
}
_FAMILY = re.compile(r"^(" + "|".join(FAMILIES) + r")_([1-9][0-9]{0,3})$")  # N = 1..9999 candles

ALLOWED = (*FEATURES, *DERIVATIVES, *(f"{f}_<N>" for f in FAMILIES), "<SYMBOL>:<feature>")  # for messages: every name params.yaml may use


SYMBOL = re.compile(r"[A-Z0-9]{2,30}")  # a Binance symbol such as ETHUSDT
_OTHER = re.compile(rf"^({SYMBOL.pattern}):(.+)$")  # SYMBOL:feature, e.g. ETHUSDT:close_pct


def other_symbol(name: str) -> tuple[str | None, str]:
    """(symbol, feature) of a name: ``("ETHUSDT", "close_pct")`` for ``ETHUSDT:close_pct``, ``(None, name)``
    for a feature of the traded symbol itself."""
    m = _OTHER.match(name)
    return (m.group(1), m.group(2)) if m else (None, name)


def others_needed(names: list[str]) -> list[str]:
    """The other symbols whose candles ``names`` need, in order of first use."""
    return list(dict.fromkeys(sym for sym, _ in map(other_symbol, names) if sym))


def is_known(name: str) -> bool:
    """Whether ``name`` is a feature this module computes (``SYMBOL:feature`` included)."""
    sym, feat = other_symbol(name)
    if sym is not None and feat in DERIVATIVES:  # the perpetual's inputs are joined for the traded symbol only
        return False
    try:
        _resolve(feat)
    except KeyError:
        return False
    return True


def _resolve(name: str) -> tuple[Callable[[pd.DataFrame], pd.Series], int]:
    if name in FEATURES:
        return FEATURES[name]
    if name in DERIVATIVES:
        return DERIVATIVES[name][:2]
    m = _FAMILY.match(name)
    if m:
        fn, need, smallest = FAMILIES[m.group(1)]
        n = int(m.group(2))
        if n >= smallest:
            return (lambda c, n=n: fn(c, n)), need(n)
    raise KeyError(f"unknown feature {name!r}")


def warmup(names: list[str]) -> int:
    """Rows at the start whose features are undefined (NaN)."""
    return max(_resolve(other_symbol(n)[1])[1] for n in names)


def compute_features(candles: pd.DataFrame, names: list[str], others: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Feature table aligned with ``candles`` (same index), float64, one column per name.

    ``SYMBOL:feature`` names compute the feature on ``others[SYMBOL]``'s candles, matched to
    ``candles`` by open time (the other symbol's candle t closes when candle t does; a candle it
    lacks gives NaN). Causal by construction: every function uses the current row and
    ``shift(k >= 0)`` only; the derivatives features read the input columns joined point-in-time
    (:data:`INPUT_COLUMNS`; a missing one is a ``KeyError`` saying what to set).
    """
    out = {}
    aligned: dict[str, pd.DataFrame] = {}
    for name in names:
        sym, feat = other_symbol(name)
        fn, _ = _resolve(feat)
        if sym is None:
            out[name] = fn(candles).astype("float64")
            continue
        if sym not in aligned:
            if not others or sym not in others:
                raise KeyError(f"{name} needs the candles of {sym}: add {sym} to data.others")
            o = others[sym].drop_duplicates("open_time").set_index("open_time").reindex(pd.DatetimeIndex(candles["open_time"]))
            aligned[sym] = o.reset_index().set_axis(candles.index)
        out[name] = fn(aligned[sym]).astype("float64")
    feats = pd.DataFrame(out, index=candles.index)
    return feats.replace([np.inf, -np.inf], np.nan)
