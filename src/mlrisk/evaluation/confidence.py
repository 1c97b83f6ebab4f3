"""Accuracy by prediction confidence (the original tool's ``dist_acc_graph``) and calibration.

Confidence is ``|p - 0.5|`` in [0, 0.5]; a backtest ``threshold`` trades exactly the rows whose
confidence is at least the threshold, so :func:`coverage_table` shows what each threshold buys.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve

from mlrisk.evaluation.classification import wilson_interval


def confidence(p: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(p, dtype="float64") - 0.5)


def confidence_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per fixed-width confidence bin on [0, 0.5]: count, share of rows, accuracy and its 95 % Wilson CI."""
    c = confidence(p)
    correct = ((np.asarray(p) >= 0.5).astype(int) == np.asarray(y).astype(int))
    edges = np.linspace(0.0, 0.5, bins + 1)
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        n, k = int(sel.sum()), int(correct[sel].sum())
        lo, hi = wilson_interval(k, n)
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "bin_mid": (edges[b] + edges[b + 1]) / 2,
                     "count": n, "share": n / max(len(c), 1), "accuracy": k / n if n else np.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def coverage_table(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """For each threshold: share of rows with confidence >= threshold and their accuracy (with CI)."""
    c = confidence(p)
    correct = ((np.asarray(p) >= 0.5).astype(int) == np.asarray(y).astype(int))
    if thresholds is None:
        thresholds = np.round(np.arange(0.0, 0.5, 0.01), 2)
    rows = []
    for t in thresholds:
        sel = c >= t
        n, k = int(sel.sum()), int(correct[sel].sum())
        lo, hi = wilson_interval(k, n)
        rows.append({"threshold": float(t), "coverage": n / max(len(c), 1), "count": n,
                     "accuracy": k / n if n else np.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability curve: mean predicted P(up) vs observed share of up, per quantile bin."""
    frac, mean_pred = calibration_curve(np.asarray(y).astype(int), np.asarray(p), n_bins=bins, strategy="quantile")
    return pd.DataFrame({"mean_predicted": mean_pred, "fraction_up": frac})
