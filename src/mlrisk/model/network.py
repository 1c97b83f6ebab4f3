"""The network, built from ``params.train``, and its reproducible ``.keras`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlrisk.config.train import TrainParams


def output_kind(tp: TrainParams, n_classes: int) -> str:
    """'sigmoid' (one unit, P(up)) or 'softmax' (one unit per class)."""
    if n_classes > 2:
        if tp.output == "sigmoid":
            raise ValueError("train.output 'sigmoid' cannot model 3 classes: use 'softmax' or 'auto'")
        return "softmax"
    return "sigmoid" if tp.output in ("auto", "sigmoid") else "softmax"


def build_model(tp: TrainParams, seq_len: int, n_features: int, n_classes: int = 2) -> Any:
    """A compiled Keras model: the sequence layers of ``tp.layers`` (recurrent ones return
    sequences on all but the last; see :class:`mlrisk.config.train.LayerParams`), each followed by its
    dropout and optional batch normalisation, a dense ReLU head, and a sigmoid or softmax output."""
    import keras
    from keras import layers

    kind = output_kind(tp, n_classes)
    inputs = keras.Input(shape=(seq_len, n_features), name="window")
    h = inputs
    for i, lp in enumerate(tp.layers):
        last = i == len(tp.layers) - 1
        if lp.type in ("lstm", "gru"):
            rnn = layers.LSTM if lp.type == "lstm" else layers.GRU
            h = rnn(lp.units, return_sequences=not last, name=f"{lp.type}_{i}")(h)
        else:
            if lp.type == "conv1d":
                h = layers.Conv1D(lp.units, lp.kernel_size, padding="causal", activation="relu", name=f"conv1d_{i}")(h)
            else:
                att = layers.MultiHeadAttention(lp.heads, lp.units, name=f"attention_{i}")(h, h, use_causal_mask=True)
                h = layers.LayerNormalization(name=f"attention_norm_{i}")(layers.Add(name=f"attention_add_{i}")([h, att]))
            if last:
                h = layers.GlobalAveragePooling1D(name=f"pool_{i}")(h)
        if lp.dropout > 0:
            h = layers.Dropout(lp.dropout, name=f"dropout_{i}")(h)
        if lp.batch_norm:
            h = layers.BatchNormalization(name=f"batch_norm_{i}")(h)
    for j, units in enumerate(tp.dense):
        h = layers.Dense(units, activation="relu", name=f"dense_{j}")(h)
        if tp.dense_dropout > 0:
            h = layers.Dropout(tp.dense_dropout, name=f"dense_dropout_{j}")(h)
    if kind == "sigmoid":
        out = layers.Dense(1, activation="sigmoid", name="p_up")(h)
        loss = "binary_crossentropy"
    else:
        out = layers.Dense(n_classes, activation="softmax", name="p_class")(h)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, out, name="mlrisk")
    opt = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}[tp.optimizer](learning_rate=tp.learning_rate)
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    return model


def targets_for(y: np.ndarray, kind: str) -> np.ndarray:
    """Labels in the shape the loss wants."""
    return y.astype("float32").reshape(-1, 1) if kind == "sigmoid" else y.astype("int32")


def save_model(model: Any, path: str | Path) -> None:
    """Save ``model`` as a ``.keras`` file, atomically and byte-for-byte reproducibly: Keras stamps
    the save time into the archive (zip entry times, ``metadata.json``'s ``date_saved``) and writes
    Python object ids as ``shared_object_id`` in ``config.json``; the times are fixed and the ids
    renumbered in order of appearance here, so the same weights give the same file and DVC skips
    the stages downstream of a retrain that changed nothing."""
    import json
    import tempfile
    import zipfile

    from mlrisk.io import atomic_path

    with tempfile.TemporaryDirectory() as tmpdir:
        raw = Path(tmpdir) / "model.keras"
        model.save(raw)
        with zipfile.ZipFile(raw) as src, atomic_path(path) as tmp, \
                zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info in sorted(src.infolist(), key=lambda i: i.filename):
                data = src.read(info)
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared_ids(json.loads(data), {})).encode()
                dst.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)


def _renumber_shared_ids(node: Any, ids: dict[int, int]) -> Any:
    """Replace each ``shared_object_id`` (a Python ``id()``) by 1, 2, ... in order of first
    appearance; objects that shared an id still share one."""
    if isinstance(node, dict):
        return {k: ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" else _renumber_shared_ids(v, ids)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_ids(v, ids) for v in node]
    return node


def load_model(path: str | Path) -> Any:
    """Load a ``.keras`` file. A missing or damaged file is a :class:`DataError` naming it (Keras
    itself says "File not found" for a file that exists but is no valid archive)."""
    import keras

    from mlrisk.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found: run `dvc repro train`")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # zipfile, h5py, JSON and Keras errors for a damaged archive
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        raise DataError(f"{path} is damaged ({type(e).__name__}: {msg}): `dvc checkout {path}` restores the last good copy, "
                        "or `dvc repro -f train` trains it again") from None
