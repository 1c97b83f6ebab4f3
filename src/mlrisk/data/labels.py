"""Labels look forward and are never features. Classes: 0 = down, 1 = up, 2 = flat
(only with ``flat_class``); NaN = no label (kept, marked, for evaluation)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlrisk.config.features import LabelParams

DOWN, UP, FLAT = 0, 1, 2


def direction_labels(close: np.ndarray, horizon: int, dead_zone: float = 0.0, flat_class: bool = False) -> np.ndarray:
    """Up if ``close[t+horizon] / close[t] - 1 > dead_zone``, down if ``< -dead_zone``.

    Returns within the dead zone are NaN (or FLAT with ``flat_class``); the last ``horizon``
    rows are NaN (the future is unknown).
    """
    n = len(close)
    y = np.full(n, np.nan)
    if n <= horizon:
        return y
    r = close[horizon:] / close[:-horizon] - 1.0
    lab = np.full(len(r), np.nan)
    lab[r > dead_zone] = UP
    lab[r < -dead_zone] = DOWN
    if flat_class:
        lab[(r >= -dead_zone) & (r <= dead_zone)] = FLAT
    y[: n - horizon] = lab
    return y


def barrier_labels(close: np.ndarray, high: np.ndarray, low: np.ndarray, horizon: int, target: float) -> np.ndarray:
    """The original tool's label: up if the high reaches ``close[t] * (1 + target)`` before the
    low reaches ``close[t] * (1 - target)`` within candles t+1 .. t+horizon; down in the
    opposite case; NaN when both are reached in the same candle or neither is.
    """
    n = len(close)
    up_lvl = close * (1.0 + target)
    dn_lvl = close * (1.0 - target)
    y = np.full(n, np.nan)
    decided = np.zeros(n, dtype=bool)
    for k in range(1, horizon + 1):
        if k >= n:
            break
        hu = np.zeros(n, dtype=bool)
        hd = np.zeros(n, dtype=bool)
        hu[: n - k] = high[k:] >= up_lvl[: n - k]
        hd[: n - k] = low[k:] <= dn_lvl[: n - k]
        open_ = ~decided
        both = open_ & hu & hd
        y[open_ & hu & ~hd] = UP
        y[open_ & hd & ~hu] = DOWN
        decided |= open_ & (hu | hd)
        y[both] = np.nan
    return y


def make_labels(candles: pd.DataFrame, p: LabelParams) -> pd.Series:
    """Labels for every candle, per ``p`` (kind, horizon, dead_zone, target, flat_class)."""
    close = candles["close"].to_numpy(dtype="float64")
    if p.kind == "direction":
        y = direction_labels(close, p.horizon, p.dead_zone, p.flat_class)
    else:
        y = barrier_labels(close, candles["high"].to_numpy("float64"), candles["low"].to_numpy("float64"), p.horizon, p.target)
    return pd.Series(y, index=candles.index, name="label")


def n_classes(p: LabelParams) -> int:
    return 3 if p.flat_class else 2
