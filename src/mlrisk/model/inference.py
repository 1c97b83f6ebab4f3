"""Inference: P(up) for many windows (the pipeline) and for the latest window (the live bot).

Windows of ``seq_len`` candles are gathered per batch inside ``tf.data`` from one
(rows x features) matrix, never materialised for the whole table. Single-window inference runs a
traced ``tf.function``: the eager call re-runs the recurrent loop op by op (~70 ms on 2 cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlrisk.data.labels import DOWN, UP


def p_up_from_output(out: np.ndarray) -> np.ndarray:
    """Probability of "up" from raw model output: the sigmoid unit, the 'up' softmax unit for
    two classes, or P(up) / (P(up) + P(down)) when a third 'flat' class exists."""
    out = np.asarray(out, dtype="float64")
    if out.ndim == 1 or out.shape[1] == 1:
        return out.reshape(-1)
    if out.shape[1] == 2:
        return out[:, UP]
    return out[:, UP] / np.clip(out[:, UP] + out[:, DOWN], 1e-12, None)


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


class Predictor:
    """Model + preprocess spec: P(up) for the latest closed candle (what the live bot calls)."""

    def __init__(self, model_path: str | Path, spec_path: str | Path) -> None:
        from mlrisk.data.preprocess import PreprocessSpec
        from mlrisk.model.network import load_model
        from mlrisk.model.tfquiet import import_tensorflow

        import_tensorflow()
        self.model = load_model(model_path)
        self.spec = PreprocessSpec.load(spec_path)
        self.infer = compiled_inference(self.model, self.spec.seq_len, len(self.spec.features))

    def predict_latest(self, candles: Any) -> float:
        """``candles``: a kline table of closed candles, oldest first, at least seq_len + warmup."""
        window = self.spec.latest_window(candles).astype("float32")
        return float(p_up_from_output(np.asarray(self.infer(window)))[0])


def compiled_inference(model: Any, seq_len: int, n_features: int) -> Any:
    """A traced ``tf.function`` for one window at a time: the eager call re-runs the recurrent
    loop op by op (~70 ms on 2 cores); the traced graph runs it in a few ms."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec((None, seq_len, n_features), tf.float32)])
    return fn
