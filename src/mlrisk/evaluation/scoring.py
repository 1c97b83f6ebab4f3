"""Scoring the model against baselines on the same rows, honestly: the verdict says the model
"beats every baseline" only when the lower bound of the paired block bootstrap's interval of its
margin over the best baseline is above zero (:mod:`mlrisk.evaluation.significance`: one-sided
p < ALPHA), and says plainly when it does not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlrisk.evaluation.classification import accuracy_p_value, classification_metrics
from mlrisk.evaluation.significance import ALPHA, CI_LEVEL, beats, interval_text, paired_tests
from mlrisk.data.klines import CANDLE_COLUMNS


def score(y: np.ndarray, p_model: np.ndarray, p_baselines: dict[str, np.ndarray], reps: int = 2000,
          seed: int = 0) -> dict[str, Any]:
    """Model and baseline metrics on the same rows (in time order), the margin over the best
    baseline with its paired block-bootstrap interval and p-value (accuracy and log loss), and a
    plain verdict that uses that test. The exact binomial p-value against the majority class is kept
    for reference only: it treats rows as independent and ignores the stronger baselines."""
    y = np.asarray(y).astype(int)
    model = classification_metrics(y, p_model)
    bl = {name: classification_metrics(y, p) for name, p in p_baselines.items()}
    best = max(bl, key=lambda k: bl[k]["accuracy"])
    margin = model["accuracy"] - bl[best]["accuracy"]
    correct = int(round(model["accuracy"] * model["n"]))
    p_majority = accuracy_p_value(correct, model["n"], bl["majority"]["accuracy"]) if "majority" in bl else float("nan")
    tests = paired_tests(y, p_model, p_baselines[best], reps=reps, seed=seed)
    acc = tests["accuracy"]
    wins = beats(acc.p_value)  # the interval's lower bound is above zero
    pp, ci = 100 * margin, interval_text(acc.ci_low, acc.ci_high, acc.p_value, acc.reps)
    if wins:
        verdict = f"The model beats every baseline: {pp:+.2f} pp over {best} ({ci})."
    elif margin > 0:
        verdict = (f"The model is {pp:+.2f} pp above the best baseline ({best}), but not significantly "
                   f"({ci}; the interval includes zero, p >= {ALPHA}): the edge may be noise.")
    else:
        verdict = (f"The model does NOT beat the best baseline ({best}): accuracy {model['accuracy']:.4f} vs "
                   f"{bl[best]['accuracy']:.4f} ({pp:+.2f} pp, {ci}). Do not trade on it.")
    return {
        "model": model,
        "baselines": bl,
        "best_baseline": best,
        "margin_over_best_baseline": margin,
        "margin_ci_low": acc.ci_low,
        "margin_ci_high": acc.ci_high,
        "margin_ci_level": CI_LEVEL,
        "p_value": acc.p_value,
        "p_value_vs_majority": p_majority,
        "bootstrap_vs_best": {k: v.to_dict() for k, v in tests.items()},
        "alpha": ALPHA,
        "beats_best_baseline": bool(wins),
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
