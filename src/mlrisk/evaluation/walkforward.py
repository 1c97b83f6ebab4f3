"""Walk-forward evaluation: retrain on expanding windows, evaluate on each following block.

The candles are cut into ``folds + 1`` equal blocks. Fold k trains on blocks 0..k-1 (its last
``val / (train + val)`` share validates early stopping, after a purge gap) and scores block k;
each fold re-fits its own scaler on its own training rows, exactly as the pipeline does.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mlrisk.config import Params, SplitParams
from mlrisk.evaluation.scoring import baseline_probabilities, score
from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
from mlrisk.model.training import fit
from mlrisk.model.inference import predict_p_up

log = logging.getLogger(__name__)


def walk_forward(candles: pd.DataFrame, params: Params, folds: int, epochs: int | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-fold metrics table and a summary (mean and std of accuracy and margin)."""
    n = len(candles)
    block = n // (folds + 1)
    val_share = params.split.val / (params.split.train + params.split.val)
    rows = []
    for k in tqdm(range(1, folds + 1), desc="walk-forward", unit="fold", disable=None):
        test_start = k * block
        test_end = n if k == folds else (k + 1) * block
        sub = candles.iloc[:test_end].reset_index(drop=True)
        val_start = int(test_start * (1 - val_share))
        t = sub["open_time"]
        sp = SplitParams(method="date", val_start=t.iloc[val_start].isoformat(), test_start=t.iloc[test_start].isoformat())
        ds, spec = build_dataset(sub, params.features, sp, params.data.interval)
        frames = {p: part_frame(ds, p) for p in ("train", "val", "test")}
        arrays = {p: window_arrays(frames[p], spec.features) for p in frames}
        res = fit(params.train, spec.seq_len, spec.n_classes, arrays["train"], arrays["val"], verbose=0, epochs=epochs)
        x, ends, y = arrays["test"]
        binary = np.isin(y, (0, 1))
        ends, y = ends[binary], y[binary]
        p = predict_p_up(res.model, x, ends, spec.seq_len)
        bl = baseline_probabilities(frames["train"], frames["test"], spec.features, ends, seed=params.train.seed)
        s = score(y, p, bl)
        rows.append({"fold": k, "train_first": t.iloc[0].isoformat(), "test_first": t.iloc[test_start].isoformat(),
                     "test_last": t.iloc[test_end - 1].isoformat(), "n_test": s["model"]["n"],
                     "accuracy": s["model"]["accuracy"], "roc_auc": s["model"]["roc_auc"], "log_loss": s["model"]["log_loss"],
                     "best_baseline": s["best_baseline"], "best_baseline_accuracy": s["baselines"][s["best_baseline"]]["accuracy"],
                     "margin": s["margin_over_best_baseline"], "p_value_vs_majority": s["p_value_vs_majority"]})
        log.info("walk-forward fold %d/%d: accuracy %.4f, margin %+.4f", k, folds, rows[-1]["accuracy"], rows[-1]["margin"])
    table = pd.DataFrame(rows)
    summary = {
        "folds": folds,
        "accuracy_mean": float(table["accuracy"].mean()), "accuracy_std": float(table["accuracy"].std(ddof=1)) if folds > 1 else 0.0,
        "margin_mean": float(table["margin"].mean()), "margin_std": float(table["margin"].std(ddof=1)) if folds > 1 else 0.0,
        "folds_beating_best_baseline": int((table["margin"] > 0).sum()),
    }
    return table, summary
