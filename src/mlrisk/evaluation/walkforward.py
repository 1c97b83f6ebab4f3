"""Walk-forward evaluation: retrain before each test block, score every block out of sample.

Each fold (see :mod:`mlrisk.evaluation.folds`) runs the pipeline's own preprocess transform on
its own candles (so its scaler is fitted on its own training rows only), trains the network with
early stopping on its validation tail, predicts P(up) for every test window, and fits the
baselines (majority, persistence, logistic, gradient-boosted trees) on the same training rows.
The folds' test blocks are stitched into one out-of-sample prediction table with a ``fold``
column, so the backtest and the report can run on many regimes instead of one short test part.

Folds are cached by content: the key hashes the fold's candles, the parameters that shape it and
the source code that computes it, so a fold whose inputs did not change is read back instead of
retrained (a changed backtest parameter never reaches this stage at all).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mlrisk.config import Params, SplitParams
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
from mlrisk.evaluation.folds import Fold, plan_folds
from mlrisk.hashing import frame_digest
from mlrisk.evaluation.scoring import baseline_probabilities, score

log = logging.getLogger(__name__)
_PKG = Path(__file__).resolve().parents[1]
_CODE = ["features.py", "config.py", "data", "model", "evaluation"]  # what a fold's result depends on


def code_fingerprint() -> str:
    """SHA-256 over the source files that compute a fold (a code change invalidates the cache)."""
    h = hashlib.sha256()
    for entry in _CODE:
        path = _PKG / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(_PKG).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fold_key(candles: pd.DataFrame, fold: Fold, params: Params, epochs: int | None, code: str,
             others: dict[str, pd.DataFrame] | None = None) -> str:
    """Content address of one fold's result: its own candles (and the other symbols' over the same
    times), its plan, the parameters and code."""
    h = hashlib.sha256()
    rows = candles.iloc[fold.start:fold.test_end]
    h.update(frame_digest(rows, CANDLE_COLUMNS))
    first, last = rows["open_time"].iloc[0], rows["open_time"].iloc[-1]
    for sym, o in sorted((others or {}).items()):
        part = o[(o["open_time"] >= first) & (o["open_time"] <= last)]
        h.update(sym.encode() + frame_digest(part, CANDLE_COLUMNS))
    spec = {"fold": fold.as_dict(), "features": params.features.model_dump(), "train": params.train.model_dump(),
            "embargo": params.evaluate.walk_forward.embargo, "epochs": epochs, "interval": params.data.interval,
            "code": code}
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def run_fold(candles: pd.DataFrame, fold: Fold, params: Params, epochs: int | None = None,
             others: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One fold: train on its window, predict its test block. Returns one row per test candle:
    the candle columns, ``p_up`` (NaN before the first full window), ``label``, ``fold``,
    ``scored`` (a labelled up/down window) and each baseline's ``p_<name>`` on scored rows."""
    from mlrisk.model.inference import predict_p_up
    from mlrisk.model.training import fit

    sub = candles.iloc[fold.start:fold.test_end].reset_index(drop=True)
    t = candles["open_time"]
    sp = SplitParams(method="date", val_start=t.iloc[fold.val_start].isoformat(), test_start=t.iloc[fold.test_start].isoformat())
    ds, spec = build_dataset(sub, params.features, sp, params.data.interval, embargo=params.evaluate.walk_forward.embargo,
                             others=others)
    frames = {p: part_frame(ds, p) for p in ("train", "val", "test")}
    arrays = {p: window_arrays(frames[p], spec.features) for p in ("train", "val")}
    res = fit(params.train, spec.seq_len, spec.n_classes, arrays["train"], arrays["val"], verbose=0, epochs=epochs)
    test = frames["test"]
    x, ends_all, _ = window_arrays(test, spec.features, only_used=False)
    p_all = predict_p_up(res.model, x, ends_all, spec.seq_len)
    out = test[[c for c in CANDLE_COLUMNS if c in test.columns]].copy()
    out["p_up"] = np.nan
    out.loc[ends_all, "p_up"] = p_all
    out["label"] = test["label"].to_numpy()
    out["fold"] = fold.k
    y_all = test["label"].to_numpy()[ends_all]
    scored = np.isin(y_all, (0, 1)) & test["use"].to_numpy()[ends_all]
    out["scored"] = False
    out.loc[ends_all[scored], "scored"] = True
    bl = baseline_probabilities(frames["train"], test, spec.features, ends_all[scored], seed=params.train.seed)
    for name, p in bl.items():
        out[f"p_{name}"] = np.nan
        out.loc[ends_all[scored], f"p_{name}"] = p
    return out


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
    from mlrisk.data.split import purge_gap
    from mlrisk.io import write_parquet

    wf = params.evaluate.walk_forward
    gap = purge_gap(params.features.label.horizon, params.features.seq_len, wf.embargo)
    folds = plan_folds(len(candles), wf, gap, end)
    code = code_fingerprint()
    cache = Path(cache_dir) if cache_dir else None
    parts, rows, cached = [], [], 0
    keep: set[str] = set()  # the cache files of this plan
    for fold in tqdm(folds, desc="walk-forward", unit="fold", disable=None):
        key = fold_key(candles, fold, params, wf.epochs, code, others)
        path = cache / f"fold-{key}.parquet" if cache else None
        if path is not None:
            keep.add(path.name)
        hit = path is not None and path.exists()
        if hit:
            out = pd.read_parquet(path)
            cached += 1
        else:
            out = run_fold(candles, fold, params, wf.epochs, others)
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
