"""The ``evaluate`` section: how the model is scored (``evaluate`` stage), the walk-forward plan and the holdout."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlrisk.config.base import _Section


class WalkForwardParams(_Section):
    """Walk-forward evaluation (see :mod:`mlrisk.evaluation.folds`). Counts are candles."""

    window: Literal["expanding", "rolling"] = "expanding"
    train: int = Field(4380, ge=50)        # the first (expanding) or every (rolling) training window, validation tail included
    test: int = Field(1460, ge=10)         # candles per test block, and the step between folds
    val: float = Field(0.15, gt=0.0, lt=0.9)  # share of each training window that validates early stopping
    embargo: int = Field(0, ge=0)          # extra candles left out between training and test, beyond the purge
    max_folds: int = Field(0, ge=0)        # 0 = as many as fit
    epochs: int | None = Field(None, ge=1)


class EvaluateParams(_Section):
    """How the model is scored (``evaluate`` stage): on the split's test part, or walk-forward over
    the whole history; either way the last ``holdout`` candles are left for ``mlrisk holdout``."""

    mode: Literal["split", "walk_forward"] = "split"
    holdout: int = Field(0, ge=0)   # final candles no stage sees; spent once by `mlrisk holdout`
    confidence_bins: int = Field(10, ge=2, le=100)
    calibration_bins: int = Field(10, ge=2, le=100)
    walk_forward: WalkForwardParams = Field(default_factory=WalkForwardParams)
