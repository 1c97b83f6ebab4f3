"""Per-candle features, computed causally: the row for candle t uses candles <= t only.

This is the one feature function shared by the pipeline and the live bot. Values are unitless
ratios or fractions (not percent). The first :func:`warmup` rows are NaN (not enough history).
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

ALLOWED = (*FEATURES, *(f"{f}_<N>" for f in FAMILIES), "<SYMBOL>:<feature>")  # for messages: every name params.yaml may use


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
    try:
        _resolve(other_symbol(name)[1])
    except KeyError:
        return False
    return True


def _resolve(name: str) -> tuple[Callable[[pd.DataFrame], pd.Series], int]:
    if name in FEATURES:
        return FEATURES[name]
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
    ``shift(k >= 0)`` only.
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
