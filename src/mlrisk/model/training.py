"""Deterministic training: seeded, TensorFlow op determinism, early stopping with best weights.

Windows come from :func:`mlrisk.model.inference.make_dataset` (gathered per batch inside
``tf.data``, so memory stays rows x features). Only train and validation rows are seen here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from mlrisk.config.train import TrainParams
from mlrisk.model.inference import make_dataset
from mlrisk.model.network import build_model, output_kind, targets_for


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic (same weights every run)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count_c) from the training labels (sklearn's ``"balanced"``);
    a class absent from ``y`` gets weight 0."""
    y = y.astype(int)
    present = np.unique(y)
    w = compute_class_weight("balanced", classes=present, y=y) * len(present) / n_classes
    got = dict(zip(present.tolist(), w.tolist()))
    return {c: float(got.get(c, 0.0)) for c in range(n_classes)}


@dataclass
class TrainResult:
    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    seconds: float
    n_train: int
    n_val: int
    class_weight: dict[int, float] | None = field(default=None)


def fit(tp: TrainParams, seq_len: int, n_classes: int,
        train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray],
        callbacks: list[Any] | None = None, verbose: int | None = None, epochs: int | None = None) -> TrainResult:
    """Build and fit the model on ``train`` = (x, ends, labels); early-stop on ``val`` loss."""
    import keras

    set_determinism(tp.seed)
    xtr, etr, ytr = train
    xva, eva, yva = val
    kind = output_kind(tp, n_classes)
    model = build_model(tp, seq_len, xtr.shape[1], n_classes)
    cw = class_weights(ytr, n_classes) if tp.class_weight == "auto" else None
    w = np.array([cw[int(v)] for v in ytr]) if cw else None
    ds_tr = make_dataset(xtr, etr, targets_for(ytr, kind), seq_len, tp.batch_size, shuffle=True, seed=tp.seed, weights=w)
    ds_va = make_dataset(xva, eva, targets_for(yva, kind), seq_len, tp.batch_size)
    cbs = list(callbacks or [])
    if tp.patience > 0:
        cbs.insert(0, keras.callbacks.EarlyStopping(monitor="val_loss", patience=tp.patience, restore_best_weights=True, verbose=0))
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    t0 = time.perf_counter()
    hist = model.fit(ds_tr, validation_data=ds_va, epochs=epochs or tp.epochs, callbacks=cbs, verbose=verbose, shuffle=False)
    secs = time.perf_counter() - t0
    h = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best = int(np.argmin(h["val_loss"])) + 1 if h.get("val_loss") else len(h.get("loss", []))
    return TrainResult(model=model, history=h, best_epoch=best, epochs_run=len(h.get("loss", [])), seconds=secs,
                       n_train=len(etr), n_val=len(eva), class_weight=cw)
