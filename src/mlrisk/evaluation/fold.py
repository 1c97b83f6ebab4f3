"""One walk-forward fold: train on its window, predict its test block (see
:mod:`mlrisk.evaluation.walkforward`), and the content address it is cached under."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlrisk.config.params import Params
from mlrisk.config.split import SplitParams
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
from mlrisk.evaluation.baselines import baseline_probabilities
from mlrisk.evaluation.folds import Fold
from mlrisk.hashing import frame_digest

_PKG = Path(__file__).resolve().parents[1]
_CODE = ["features.py", "config", "data", "model", "evaluation"]  # what a fold's result depends on


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
