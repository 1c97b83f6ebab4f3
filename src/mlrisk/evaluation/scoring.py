"""Scoring the model against baselines on the test part, honestly: the verdict says plainly
when the model does not beat a baseline or is not significantly better than chance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlrisk.evaluation import baselines
from mlrisk.evaluation.classification import accuracy_p_value, classification_metrics
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.preprocess import window_arrays

ALPHA = 0.05


def baseline_probabilities(train: pd.DataFrame, test: pd.DataFrame, features: list[str], ends_test: np.ndarray,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """P(up) of each baseline on the test windows ending at ``ends_test``, fitted on the training
    part's used up/down windows only."""
    _, ends_train, y_train = window_arrays(train, features)
    keep = np.isin(y_train, (0, 1))
    ends_train, y_train = ends_train[keep], y_train[keep].astype(int)
    return {
        "majority": baselines.majority(y_train, len(ends_test)),
        "persistence": baselines.persistence(train["close"].to_numpy(), ends_train, y_train,
                                             test["close"].to_numpy(), ends_test),
        "logistic": baselines.logistic(train[features].to_numpy()[ends_train], y_train,
                                       test[features].to_numpy()[ends_test], seed=seed),
    }


def score(y: np.ndarray, p_model: np.ndarray, p_baselines: dict[str, np.ndarray]) -> dict[str, Any]:
    """Model and baseline metrics on the same rows, the margin over the best baseline, the
    p-value that the model's accuracy beats the majority baseline, and a plain verdict."""
    y = np.asarray(y).astype(int)
    model = classification_metrics(y, p_model)
    bl = {name: classification_metrics(y, p) for name, p in p_baselines.items()}
    best = max(bl, key=lambda k: bl[k]["accuracy"])
    margin = model["accuracy"] - bl[best]["accuracy"]
    correct = int(round(model["accuracy"] * model["n"]))
    p_value = accuracy_p_value(correct, model["n"], bl["majority"]["accuracy"]) if "majority" in bl else float("nan")
    beats = margin > 0
    significant = beats and p_value < ALPHA
    pp = 100 * margin
    if not beats:
        verdict = (f"The model does NOT beat the best baseline ({best}): accuracy {model['accuracy']:.4f} vs "
                   f"{bl[best]['accuracy']:.4f} ({pp:+.2f} pp). Do not trade on it.")
    elif not significant:
        verdict = (f"The model beats the best baseline ({best}) by {pp:+.2f} pp, but its accuracy is not significantly "
                   f"above the majority class (p = {p_value:.3g} >= {ALPHA}): the edge may be noise.")
    else:
        verdict = (f"The model beats every baseline: {pp:+.2f} pp over {best}; accuracy above the majority class "
                   f"with p = {p_value:.3g}.")
    return {
        "model": model,
        "baselines": bl,
        "best_baseline": best,
        "margin_over_best_baseline": margin,
        "p_value_vs_majority": p_value,
        "beats_best_baseline": bool(beats),
        "significant": bool(significant),
        "verdict": verdict,
    }


def predictions_table(frame: pd.DataFrame, ends: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """Every test candle with its P(up) at the close (NaN before the first full window) and label."""
    cols = [c for c in CANDLE_COLUMNS if c in frame.columns]
    out = frame[cols].copy()
    p_up = np.full(len(frame), np.nan)
    p_up[ends] = p
    out["p_up"] = p_up
    out["label"] = frame["label"].to_numpy()
    return out
