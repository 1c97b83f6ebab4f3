"""Baselines scored on the same test rows as the model. Each is fitted on the training part only
and returns P(up) per test row, so every metric applies to it.

- ``majority``: the training part's majority class, with P(up) = the training share of up.
- ``persistence``: "same direction as the last candle"; P(up) = the training frequency of up
  after an up (or down) candle.
- ``logistic``: scikit-learn logistic regression on the last step of each window (the features
  of candle t only).
- ``gbt``: gradient-boosted trees on the last step's features and a few lags (candles t, t-1, t-2).

:func:`baseline_probabilities` fits all four on a training part's windows and predicts a test part's
(the split evaluation and every walk-forward fold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlrisk.data.preprocess import window_arrays


def majority(y_train: np.ndarray, n_test: int) -> np.ndarray:
    """P(up) = the training share of up, for every test row (its hard prediction is the majority class)."""
    return np.full(n_test, float(np.mean(y_train == 1)))


def last_direction(close: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """+1 when candle t closed above candle t-1, -1 below, 0 unchanged (t = window end)."""
    prev = close[np.maximum(ends - 1, 0)]
    d = np.sign(close[ends] - prev)
    d[ends == 0] = 0
    return d


def persistence(close_train: np.ndarray, ends_train: np.ndarray, y_train: np.ndarray,
                close_test: np.ndarray, ends_test: np.ndarray) -> np.ndarray:
    """P(up | direction of the last candle), estimated on the training part."""
    d_tr = last_direction(close_train, ends_train)
    d_te = last_direction(close_test, ends_test)
    overall = float(np.mean(y_train == 1))
    p = np.full(len(ends_test), overall)
    for d in (-1, 1):
        sel = d_tr == d
        if sel.any():
            p[d_te == d] = float(np.mean(y_train[sel] == 1))
    return p


def logistic(x_train_last: np.ndarray, y_train: np.ndarray, x_test_last: np.ndarray, seed: int = 0) -> np.ndarray:
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train_last, (y_train == 1).astype(int))
    return clf.predict_proba(x_test_last)[:, 1]


def lagged_features(x: np.ndarray, ends: np.ndarray, lags: int) -> np.ndarray:
    """The features of rows ``ends``, ``ends - 1``, ..., ``ends - lags`` side by side (rows x
    (lags + 1) * features). Only rows inside each window are used, so no row after ``ends`` is read."""
    return np.hstack([x[np.asarray(ends) - k] for k in range(lags + 1)])


def gradient_boosting(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-learn's ``HistGradientBoostingClassifier`` (shallow trees, early stopping on an
    internal 10 % validation split of the training rows): a strong, cheap tabular baseline."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50,
                                         l2_regularization=1.0, early_stopping=True, validation_fraction=0.1,
                                         n_iter_no_change=20, random_state=seed)
    clf.fit(x_train, (y_train == 1).astype(int))
    return clf.predict_proba(x_test)[:, 1]


def baseline_probabilities(train: pd.DataFrame, test: pd.DataFrame, features: list[str], ends_test: np.ndarray,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """P(up) of each baseline on the test windows ending at ``ends_test``, fitted on the training
    part's used up/down windows only."""
    _, ends_train, y_train = window_arrays(train, features)
    keep = np.isin(y_train, (0, 1))
    ends_train, y_train = ends_train[keep], y_train[keep].astype(int)
    x_train, x_test = train[features].to_numpy(), test[features].to_numpy()
    lags = int(min(2, ends_train.min(initial=0), ends_test.min(initial=0)))  # rows t-1, t-2 lie inside every window
    return {
        "majority": majority(y_train, len(ends_test)),
        "persistence": persistence(train["close"].to_numpy(), ends_train, y_train,
                                      test["close"].to_numpy(), ends_test),
        "logistic": logistic(x_train[ends_train], y_train, x_test[ends_test], seed=seed),
        "gbt": gradient_boosting(lagged_features(x_train, ends_train, lags), y_train,
                                 lagged_features(x_test, ends_test, lags), seed=seed),
    }
