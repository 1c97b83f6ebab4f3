"""Walk-forward evaluation: retrain before each test block, score every block out of sample.

Each fold (see :mod:`mlrisk.evaluation.folds`) runs the pipeline's own preprocess transform on
its own candles (so its scaler is fitted on its own training rows only), trains the network with
early stopping on its validation tail, predicts P(up) for every test window, and fits the
baselines (majority, persistence, logistic, gradient-boosted trees) on the same training rows.
The folds' test blocks are stitched into one out-of-sample prediction table with a ``fold``
column, so the backtest and the report can run on many regimes instead of one short test part.

Folds are cached by content (:func:`mlrisk.evaluation.fold.fold_key`): the key hashes the fold's
candles, the parameters it reads and the source files it runs, so a fold whose inputs did not
change is read back instead of retrained (a changed backtest parameter never reaches this stage at
all, and a changed scoring rule re-scores the cached folds without retraining them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from mlrisk.data.split import purge_gap
from mlrisk.evaluation.fold import FoldSettings, code_fingerprint, fold_key, run_fold
from mlrisk.evaluation.folds import plan_folds
from mlrisk.evaluation.scoring import score

if TYPE_CHECKING:  # annotations only: the evaluate stage passes the sections it read, not every section
    from mlrisk.config.params import Params

log = logging.getLogger(__name__)


@dataclass
class WalkForwardResult:
    predictions: pd.DataFrame   # every out-of-sample candle, stitched in time order, with ``fold``
    folds: pd.DataFrame         # one row per fold: dates, model and baseline metrics, bootstrap margin
    pooled: dict[str, Any]      # the same over all folds' rows together
    cached: int                 # folds read from the cache instead of retrained


def _scores(rows: pd.DataFrame, reps: int, seed: int) -> dict[str, Any]:
    y = rows["label"].to_numpy().astype(int)
    names = [c[2:] for c in rows.columns if c.startswith("p_") and c != "p_up"]
    return score(y, rows["p_up"].to_numpy(), {n: rows[f"p_{n}"].to_numpy() for n in names}, reps=reps, seed=seed)


def run_walk_forward(candles: pd.DataFrame, params: Params, cache_dir: str | Path | None = None,
                     end: int | None = None, reps: int = 1000, others: dict[str, pd.DataFrame] | None = None) -> WalkForwardResult:
    """Plan the folds over the first ``end`` candles, run (or read back) each, and score them."""
    from mlrisk.io import write_parquet

    wf = params.evaluate.walk_forward
    gap = purge_gap(params.features.label.horizon, params.features.seq_len, wf.embargo)
    folds = plan_folds(len(candles), wf, gap, end)
    code = code_fingerprint()
    settings = FoldSettings.of(params)
    cache = Path(cache_dir) if cache_dir else None
    parts, rows, cached = [], [], 0
    keep: set[str] = set()  # the cache files of this plan
    for fold in tqdm(folds, desc="walk-forward", unit="fold", disable=None):
        key = fold_key(candles, fold, settings, code, others)
        path = cache / f"fold-{key}.parquet" if cache else None
        if path is not None:
            keep.add(path.name)
        hit = path is not None and path.exists()
        if hit:
            out = pd.read_parquet(path)
            cached += 1
        else:
            out = run_fold(candles, fold, settings, others)
            if path is not None:
                write_parquet(path, out)
        parts.append(out)
        s = _scores(out[out["scored"]], reps, params.train.seed)
        t = out["open_time"]
        boot = s["bootstrap_vs_best"]["accuracy"]
        row = {"fold": fold.k, "train_first": candles["open_time"].iloc[fold.start].isoformat(),
               "test_first": t.iloc[0].isoformat(), "test_last": t.iloc[-1].isoformat(), "n_test": s["model"]["n"],
               "accuracy": s["model"]["accuracy"], "log_loss": s["model"]["log_loss"], "roc_auc": s["model"]["roc_auc"]}
        row |= {f"{n}_accuracy": m["accuracy"] for n, m in s["baselines"].items()}
        row |= {"best_baseline": s["best_baseline"], "margin": s["margin_over_best_baseline"],
                "margin_ci_low": boot["ci_low"], "margin_ci_high": boot["ci_high"], "p_value": boot["p_value"],
                "beats_best_baseline": s["beats_best_baseline"]}
        rows.append(row)
        log.info("walk-forward fold %d/%d%s: accuracy %.4f, margin %+.4f over %s", fold.k, len(folds),
                 " (cached)" if hit else "", row["accuracy"], row["margin"], row["best_baseline"])
    if cache is not None:  # keep only the folds of this plan: the cache never grows without bound
        for old in cache.glob("fold-*.parquet"):
            if old.name not in keep:
                old.unlink()
    pred = pd.concat(parts, ignore_index=True)
    pooled = _scores(pred[pred["scored"]], reps, params.train.seed)
    return WalkForwardResult(pred, pd.DataFrame(rows), pooled, cached)
