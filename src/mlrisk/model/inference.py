"""Inference: P(up) for many windows (the pipeline) and for the latest window (the live bot).

Windows of ``seq_len`` candles are gathered per batch inside ``tf.data`` from one
(rows x features) matrix, never materialised for the whole table. Both run the model's forward pass
through one traced ``tf.function`` per architecture that takes the weights as inputs (see
:func:`compiled_inference`): the eager call re-runs the recurrent loop op by op (~70 ms on 2
cores), and Keras' ``predict`` traces its predict function again for every new model (each
walk-forward fold) and for every new batch size, which TensorFlow reports as retracing.
"""

from __future__ import annotations

import json
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
    infer = compiled_inference(model, seq_len, x.shape[1])
    out = [np.asarray(infer(batch)) for batch in make_dataset(x, ends, None, seq_len, batch_size)]
    return p_up_from_output(np.concatenate(out))


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


_TRACED: dict[str, Any] = {}  # architecture key -> its traced forward pass (one per process)


def compiled_inference(model: Any, seq_len: int, n_features: int) -> Any:
    """``model``'s forward pass (``training=False``) as a function of a (windows x ``seq_len`` x
    ``n_features``) float32 batch. It runs a ``tf.function`` traced once per architecture and
    process: the weights are inputs of the graph (Keras' ``stateless_call``), not constants captured
    from one model, and the batch size is left open, so a new model of the same architecture (a
    walk-forward fold) or a smaller last batch reuses the graph instead of tracing it again."""
    import tensorflow as tf

    trainable, fixed = model.trainable_variables, model.non_trainable_variables
    specs = [[tf.TensorSpec(v.shape, v.dtype) for v in vs] for vs in (trainable, fixed)]
    key = json.dumps([model.get_config(), seq_len, n_features, [[(tuple(s.shape), s.dtype.name) for s in vs] for vs in specs]],
                     sort_keys=True, default=str)
    fn = _TRACED.get(key)
    if fn is None:
        template = model  # its layer graph only; the weights come in as tensors

        def forward(weights: Any, state: Any, windows: Any) -> Any:
            return template.stateless_call(weights, state, windows, training=False)[0]

        fn = _TRACED[key] = tf.function(forward, input_signature=[*specs, tf.TensorSpec((None, seq_len, n_features), tf.float32)])
    return lambda windows: fn([v.value for v in trainable], [v.value for v in fixed], windows)
