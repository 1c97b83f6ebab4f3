"""Classification metrics for P(up) predictions, and the significance of an accuracy.

``y`` holds 0 (down) / 1 (up); ``p`` is the predicted probability of up; the predicted class is
up when ``p >= 0.5``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, log_loss, roc_auc_score

EPS = 1e-7


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """accuracy, balanced accuracy, ROC AUC (NaN with one class), log loss, Brier score, n."""
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    pred = (p >= 0.5).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "n": int(len(y)),
    }


def accuracy_p_value(correct: int, n: int, baseline_accuracy: float) -> float:
    """One-sided exact binomial p-value that the true accuracy exceeds ``baseline_accuracy``."""
    if n == 0:
        return float("nan")
    return float(binomtest(int(correct), int(n), min(max(baseline_accuracy, 0.0), 1.0), alternative="greater").pvalue)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k / n`` (NaN, NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
