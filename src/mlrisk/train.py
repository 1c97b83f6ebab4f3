"""Deterministic training: seeded, TensorFlow op determinism, early stopping with best weights.

Windows are gathered per batch inside ``tf.data`` from the (rows x features) matrix, so memory
stays rows x features. Only train and validation rows are seen here.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from mlrisk.config import TrainParams
from mlrisk.model import build_model, output_kind, p_up_from_output, targets_for


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
    """Balanced weights n / (k * count_c) from the training labels (sklearn's 'balanced')."""
    counts = np.bincount(y.astype(int), minlength=n_classes).astype(float)
    return {c: float(len(y) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


def make_dataset(x: np.ndarray, ends: np.ndarray, y: np.ndarray | None, seq_len: int, batch_size: int,
                 shuffle: bool = False, seed: int = 0, weights: np.ndarray | None = None) -> Any:
    """A ``tf.data.Dataset`` of (window batch, target[, sample weight]); windows end at ``ends``."""
    import tensorflow as tf

    xt = tf.constant(x, dtype=tf.float32)
    offsets = tf.range(-(seq_len - 1), 1, dtype=tf.int64)
    parts: list[Any] = [ends.astype("int64")]
    if y is not None:
        parts.append(y)
    if weights is not None:
        parts.append(weights.astype("float32"))
    ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
    if shuffle:
        ds = ds.shuffle(len(ends), seed=seed, reshuffle_each_iteration=True)

    def gather(e: Any, *rest: Any) -> Any:
        win = tf.gather(xt, e[:, None] + offsets[None, :])
        return (win, *rest) if rest else win

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def predict_p_up(model: Any, x: np.ndarray, ends: np.ndarray, seq_len: int, batch_size: int = 512) -> np.ndarray:
    """P(up) for the windows ending at rows ``ends`` of ``x``."""
    if len(ends) == 0:
        return np.empty(0)
    out = model.predict(make_dataset(x, ends, None, seq_len, batch_size), verbose=0)
    return p_up_from_output(out)


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
