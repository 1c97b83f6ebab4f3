"""One walk-forward fold: train on its window, predict its test block (see
:mod:`mlrisk.evaluation.walkforward`), and the content address its result is cached under.

The address covers exactly what the result depends on: the fold's candles (and the other symbols'
over the same times), its plan (row bounds), :class:`FoldSettings` (the only parameters
:func:`run_fold` reads) and :func:`code_fingerprint`, the SHA-256 of the source files this module
runs (its import closure, :func:`mlrisk.code_deps.imported_files`). Editing code a fold does not
run (scoring, significance, the report, the live bot, another params section) keeps every cached
fold; editing a feature, the preprocessing, the network or its training retrains them all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlrisk.code_deps import SRC, imported_files
from mlrisk.config.features import FeatureParams
from mlrisk.config.split import SplitParams
from mlrisk.config.train import TrainParams
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
from mlrisk.evaluation.baselines import baseline_probabilities
from mlrisk.features import INPUT_COLUMNS
from mlrisk.hashing import frame_digest

if TYPE_CHECKING:  # annotations only: the plan's values are hashed, not the code that made them
    from mlrisk.evaluation.folds import Fold


@dataclass(frozen=True)
class FoldSettings:
    """The parameters a fold reads, and nothing else: the features and label, the network and its
    fitting, the candle interval, the embargo (candles) and the epochs per fold (None = ``train.epochs``)."""

    features: FeatureParams
    train: TrainParams
    interval: str
    embargo: int
    epochs: int | None

    @classmethod
    def of(cls, params: Any) -> "FoldSettings":
        """From validated params holding the ``data``, ``features``, ``train`` and ``evaluate`` sections."""
        wf = params.evaluate.walk_forward
        return cls(params.features, params.train, params.data.interval, wf.embargo, wf.epochs)

    def as_dict(self) -> dict[str, Any]:
        return {"features": self.features.model_dump(), "train": self.train.model_dump(), "interval": self.interval,
                "embargo": self.embargo, "epochs": self.epochs}


def code_fingerprint(src: Path = SRC) -> str:
    """SHA-256 over the source files (under ``src``) that this module runs: a change to any of them
    invalidates the fold cache, a change to any other file does not."""
    h = hashlib.sha256()
    for f in sorted(imported_files(src / "mlrisk" / "evaluation" / "fold.py", src)):
        h.update(f.relative_to(src).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def fold_key(candles: pd.DataFrame, fold: Fold, settings: FoldSettings, code: str,
             others: dict[str, pd.DataFrame] | None = None) -> str:
    """Content address of one fold's result: its own candles (with the derivatives inputs joined onto
    them, :data:`mlrisk.features.INPUT_COLUMNS`; and the other symbols' over the same times), its plan, its settings and the code (:func:`code_fingerprint`)."""
    h = hashlib.sha256()
    rows = candles.iloc[fold.start:fold.test_end]
    h.update(frame_digest(rows, CANDLE_COLUMNS + [c for c in INPUT_COLUMNS if c in rows.columns]))
    first, last = rows["open_time"].iloc[0], rows["open_time"].iloc[-1]
    for sym, o in sorted((others or {}).items()):
        part = o[(o["open_time"] >= first) & (o["open_time"] <= last)]
        h.update(sym.encode() + frame_digest(part, CANDLE_COLUMNS))
    spec = {"fold": fold.as_dict(), **settings.as_dict(), "code": code}
    h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def run_fold(candles: pd.DataFrame, fold: Fold, settings: FoldSettings,
             others: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """One fold: train on its window, predict its test block. Returns one row per test candle:
    the candle columns, ``p_up`` (NaN before the first full window), ``label``, ``fold``,
    ``scored`` (a labelled up/down window) and each baseline's ``p_<name>`` on scored rows."""
    from mlrisk.model.inference import predict_p_up
    from mlrisk.model.training import fit

    sub = candles.iloc[fold.start:fold.test_end].reset_index(drop=True)
    t = candles["open_time"]
    sp = SplitParams(method="date", val_start=t.iloc[fold.val_start].isoformat(), test_start=t.iloc[fold.test_start].isoformat())
    ds, spec = build_dataset(sub, settings.features, sp, settings.interval, embargo=settings.embargo, others=others)
    frames = {p: part_frame(ds, p) for p in ("train", "val", "test")}
    arrays = {p: window_arrays(frames[p], spec.features) for p in ("train", "val")}
    res = fit(settings.train, spec.seq_len, spec.n_classes, arrays["train"], arrays["val"], verbose=0,
              epochs=settings.epochs)
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
    bl = baseline_probabilities(frames["train"], test, spec.features, ends_all[scored], seed=settings.train.seed)
    for name, p in bl.items():
        out[f"p_{name}"] = np.nan
        out.loc[ends_all[scored], f"p_{name}"] = p
    return out
