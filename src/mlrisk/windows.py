"""Sequence windows without copying: memory grows with rows x features, not rows x seq_len x features.

A window "ending at row t" holds feature rows ``t - seq_len + 1 .. t`` (inclusive), so a model
fed that window at the close of candle t sees nothing after t.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def window_view(x: np.ndarray, seq_len: int) -> np.ndarray:
    """Read-only strided view of shape ``(rows - seq_len + 1, seq_len, features)``; entry ``i``
    is the window ending at row ``i + seq_len - 1``. No data is copied."""
    if x.ndim != 2:
        raise ValueError("x must be 2-D (rows, features)")
    if len(x) < seq_len:
        return np.empty((0, seq_len, x.shape[1]), dtype=x.dtype)
    return sliding_window_view(x, seq_len, axis=0).transpose(0, 2, 1)


def windows_at(x: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Materialise the windows ending at rows ``ends`` (a batch): shape ``(len(ends), seq_len, F)``."""
    ends = np.asarray(ends, dtype=np.int64)
    if len(ends) and (ends.min() < seq_len - 1 or ends.max() >= len(x)):
        raise IndexError("window end out of range")
    return window_view(x, seq_len)[ends - (seq_len - 1)]
