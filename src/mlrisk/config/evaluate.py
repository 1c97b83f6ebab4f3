"""The ``evaluate`` section: how the model is scored (``evaluate`` stage), the walk-forward plan and the holdout."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlrisk.config.base import _Section


class WalkForwardParams(_Section):
    """Walk-forward evaluation (see :mod:`mlrisk.evaluation.folds`). Counts are candles."""

    window: Literal["expanding", "rolling"] = Field(
        "expanding", description="expanding: every fold trains from the first candle; rolling: on the last `train` "
        "candles before its test block.")
    train: int = Field(4380, ge=50, description="Candles of the first (expanding) or every (rolling) training window, "
                       "validation tail included (4380 = 6 months of 1h candles).")
    test: int = Field(1460, ge=10, description="Candles per test block, and the step between folds.")
    val: float = Field(0.15, gt=0.0, lt=0.9, description="Share of each training window, at its end, that validates "
                       "early stopping (a fraction: 0.15 = 15 %).")
    embargo: int = Field(0, ge=0, description="Extra candles left out between training and test, beyond the purge of "
                         "horizon + seq_len candles.")
    max_folds: int = Field(0, ge=0, description="Most folds, from the first (the later candles then go unscored); 0 = as many as fit.")
    epochs: int | None = Field(None, ge=1, description="Epochs per fold; null = train.epochs.")


class EvaluateParams(_Section):
    """How the model is scored (``evaluate`` stage): on the split's test part, or walk-forward over
    the whole history; either way the last ``holdout`` candles are left for ``mlrisk holdout``."""

    mode: Literal["split", "walk_forward"] = Field(
        "split", description="split: score the pinned model on the split's test part; walk_forward: retrain before "
        "each test block over the whole history (fold cache: models/folds/).")
    holdout: int = Field(0, ge=0, description="Final candles no stage sees, spent once by `mlrisk holdout` (set it "
                         "before a search, e.g. 1460 = two months of 1h candles); 0 = none.")
    confidence_bins: int = Field(10, ge=2, le=100, description="Fixed-width bins of |P(up) - 0.5| on [0, 0.5] for the "
                                 "accuracy-by-confidence table.")
    calibration_bins: int = Field(10, ge=2, le=100, description="Quantile bins of P(up) for the reliability curve.")
    walk_forward: WalkForwardParams = Field(default_factory=WalkForwardParams,
                                            description="The walk-forward plan (mode walk_forward).")
