"""Walk-forward fold plans: which candles train, validate and test in each fold.

Rows are positions in the raw candle table (time order). Fold k tests the block
``[test_start, test_end)``; its training window ends before it, after a purge of
:func:`~mlrisk.data.split.purge_gap` candles (``horizon + seq_len + embargo``) that belongs to no part, so no label
or window of the training part looks into the test block. The window is *expanding* (it always
starts at row 0) or *rolling* (a fixed length ending at the purge). Its last ``val`` share is the
validation tail for early stopping, again after a purge. Test blocks are consecutive and never
overlap, so stitching the folds' predictions gives one out-of-sample period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlrisk.config.evaluate import WalkForwardParams
from mlrisk.errors import DataError


@dataclass(frozen=True)
class Fold:
    k: int           # 1-based fold number
    start: int       # first row of the training window
    val_start: int   # first row of the validation tail
    test_start: int  # first row of the test block
    test_end: int    # one past the last row of the test block

    def as_dict(self) -> dict[str, int]:
        return {"fold": self.k, "start": self.start, "val_start": self.val_start,
                "test_start": self.test_start, "test_end": self.test_end}


def plan_folds(n_rows: int, wf: WalkForwardParams, gap: int, end: int | None = None) -> list[Fold]:
    """The folds over the first ``end`` rows (default all; a holdout lies beyond ``end``).

    ``gap`` is :func:`~mlrisk.data.split.purge_gap` (``horizon + seq_len + embargo``): rows between the training
    window and the test block that belong to neither. Raises :class:`DataError` when not even one
    fold fits."""
    end = n_rows if end is None else min(end, n_rows)
    folds: list[Fold] = []
    test_start = wf.train + gap
    while test_start + min(wf.test, 10) <= end:
        test_end = min(test_start + wf.test, end)
        if end - test_end < wf.test // 2:  # a short remainder joins the last block
            test_end = end
        train_end = test_start - gap
        start = 0 if wf.window == "expanding" else max(0, train_end - wf.train)
        val_start = train_end - max(1, int(round((train_end - start) * wf.val)))
        folds.append(Fold(len(folds) + 1, start, val_start, test_start, test_end))
        if wf.max_folds and len(folds) == wf.max_folds:
            break
        test_start = test_end
        if test_end == end:
            break
    if not folds:
        raise DataError(
            f"walk-forward: {end} candles cannot hold one fold of evaluate.walk_forward.train = {wf.train} "
            f"+ gap {gap} + a test block: lower walk_forward.train/test or use more data")
    return folds


def split_periods(pred: pd.DataFrame, fraction: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first ``fraction`` of a walk-forward prediction table's folds (selection) and the rest
    (report), cut at a fold boundary."""
    folds = np.unique(pred["fold"].to_numpy())
    if len(folds) < 2:
        raise ValueError("honest selection on walk-forward predictions needs at least two folds")
    cut = folds[max(1, int(round(len(folds) * fraction))) - 1]
    first = pred["fold"] <= cut
    return pred[first].reset_index(drop=True), pred[~first].reset_index(drop=True)
