"""Chronological train / validation / test split with a purge gap between parts.

Parts are contiguous row ranges ``[start, end)``. The ``purge`` rows before the validation and the
test part belong to no part, so no label of one part looks into the next part's windows and no
window spans two parts (windows are built inside a part only). :func:`purge_gap` is the one
formula for that gap, used by the split, the walk-forward folds and the holdout fold alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlrisk.config.split import SplitParams
from mlrisk.errors import DataError
from mlrisk.times import utc

PARTS = ("train", "val", "test")


def purge_gap(label_horizon: int, seq_len: int, embargo: int = 0) -> int:
    """Candles between two parts that belong to neither: ``label_horizon + seq_len + embargo``.

    ``label_horizon`` candles so that no label of the earlier part looks at a candle of the later
    one, ``seq_len`` so that no window of the later part starts inside the earlier one, and an
    optional ``embargo`` on top. All in candles."""
    return label_horizon + seq_len + embargo


@dataclass(frozen=True)
class Split:
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    purge: int

    def part(self, name: str) -> tuple[int, int]:
        return getattr(self, name)

    def labels(self, n: int) -> np.ndarray:
        """Part name of each of ``n`` rows ('purge' for rows in no part)."""
        out = np.full(n, "purge", dtype=object)
        for name in PARTS:
            s, e = self.part(name)
            out[s:e] = name
        return out


def split_rows(times: pd.Series, p: SplitParams, purge: int, min_rows: int = 1) -> Split:
    """Row ranges for the parts of a table whose ``times`` are sorted UTC timestamps."""
    n = len(times)
    if p.method == "fraction":
        b1 = int(n * p.train)
        b2 = int(n * (p.train + p.val))
    elif p.method == "final":  # the most recent window: train, then a validation tail; no test part
        b1 = int(n * (1.0 - p.val))
        b2 = n + purge
    else:
        ts = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
        b1 = int(ts.searchsorted(utc(p.val_start)))
        b2 = int(ts.searchsorted(utc(p.test_start)))
    split = Split(train=(0, b1 - purge), val=(b1, b2 - purge), test=(min(b2, n), n), purge=purge)
    for name in PARTS:
        if name == "test" and p.method == "final":
            continue
        s, e = split.part(name)
        if e - s < min_rows:
            raise DataError(
                f"the {name} part has {max(0, e - s)} rows, fewer than the {min_rows} it needs "
                f"(seq_len plus a few samples; purge gap {purge} = horizon + seq_len + embargo): use more data, "
                "a smaller features.seq_len/label.horizon, or other split fractions/dates"
            )
    return split
