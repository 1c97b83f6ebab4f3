"""The preprocess transform: features -> labels -> split -> scaler fitted on train -> dataset.

:class:`PreprocessSpec` is everything needed to redo the transform on new (live) candles; it is
saved as ``models/preprocess.json`` and loaded by training, evaluation and the live bot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from mlrisk.config.features import FeatureParams
from mlrisk.config.split import SplitParams
from mlrisk.errors import DataError
from mlrisk.features import DERIVATIVES, METRICS_LAG_MINUTES, compute_features, warmup
from mlrisk.data.klines import CANDLE_COLUMNS
from mlrisk.data.labels import n_classes, make_labels
from mlrisk.data.split import PARTS, purge_gap, split_rows
from mlrisk.times import INTERVAL_MS

SPEC_VERSION = 1


@dataclass
class PreprocessSpec:
    """Feature names, window length, label definition and the train-fitted scaler: each feature is
    clipped to ``[clip_low, clip_high]`` (its train quantiles; None = no clipping), then z-scored.
    ``candles`` and ``metrics_lag`` tell the live bot which candles and inputs to build the window
    from (:class:`mlrisk.live.feeds.inputs.WindowInputs`)."""

    features: list[str]
    seq_len: int
    warmup: int
    mean: list[float]
    scale: list[float]
    label: dict[str, Any]
    n_classes: int
    interval: str
    split: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION
    clip_low: list[float] | None = None
    clip_high: list[float] | None = None
    candles: str = "traded"  # features.candles: the candles the model learns on (traded | spot)
    metrics_lag: int = METRICS_LAG_MINUTES  # features.metrics_lag: minutes before a metrics row may be used

    def scale_features(self, feats: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Apply the saved transform: clip to the train quantiles, then ``(x - mean) / scale``, float64
        (NaN stays NaN)."""
        x = np.asarray(feats, dtype="float64")
        if self.clip_low is not None and self.clip_high is not None:
            x = np.clip(x, np.asarray(self.clip_low), np.asarray(self.clip_high))
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def transform(self, candles: pd.DataFrame, others: dict[str, pd.DataFrame] | None = None) -> np.ndarray:
        """Scaled feature matrix for ``candles`` (rows aligned; warmup rows are NaN); ``others``: the
        candles of the symbols that ``SYMBOL:feature`` names use."""
        return self.scale_features(compute_features(candles, self.features, others)[self.features])

    def latest_window(self, candles: pd.DataFrame, others: dict[str, pd.DataFrame] | None = None) -> np.ndarray:
        """The window ending at the last (closed) candle, shape ``(1, seq_len, F)``, for live use."""
        need = self.seq_len + self.warmup
        if len(candles) < need:
            raise DataError(f"need at least {need} closed candles for one window, got {len(candles)}")
        x = self.transform(candles.iloc[-need:], others)
        return x[-self.seq_len:][None, :, :]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from mlrisk.io import write_json

        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "PreprocessSpec":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path} is unreadable ({type(e).__name__}): re-run `dvc repro preprocess` (or `dvc checkout {path}`)") from None
        if raw.get("version") != SPEC_VERSION:
            raise DataError(f"{path}: preprocess spec version {raw.get('version')} != {SPEC_VERSION}: re-run `dvc repro preprocess`")
        return cls(**raw)


def load_others(raw_dir: str | Path, interval: str, symbols: list[str]) -> dict[str, pd.DataFrame]:
    """The candles of ``symbols`` (``data.others``) that the fetch stage wrote to ``raw_dir``."""
    from mlrisk.io import read_parquet

    return {sym: read_parquet(Path(raw_dir) / f"{sym}-{interval}.parquet", "run `dvc repro fetch`") for sym in symbols}


def fit_clip(train_feats: np.ndarray, tail: float) -> tuple[list[float] | None, list[float] | None]:
    """Per-feature clipping bounds: the ``tail`` and ``1 - tail`` quantiles of the training rows only
    (None, None when ``tail`` is 0)."""
    if tail <= 0:
        return None, None
    lo, hi = np.quantile(np.asarray(train_feats, dtype="float64"), [tail, 1.0 - tail], axis=0)
    return lo.tolist(), hi.tolist()


def fit_scaler(train_feats: np.ndarray) -> tuple[list[float], list[float]]:
    """Z-score parameters from the training rows only (sklearn ``StandardScaler``)."""
    sc = StandardScaler().fit(train_feats)
    return sc.mean_.tolist(), sc.scale_.tolist()


def undersample(y: np.ndarray, eligible: np.ndarray, seed: int) -> np.ndarray:
    """Mask keeping all rows of the rarest class among ``eligible`` rows and an equal random
    draw of every other class (seeded). Rows not eligible stay False."""
    rng = np.random.default_rng(seed)
    idx = np.nonzero(eligible)[0]
    classes, counts = np.unique(y[idx], return_counts=True)
    keep = np.zeros(len(y), dtype=bool)
    m = counts.min()
    for c in classes:
        ci = idx[y[idx] == c]
        keep[np.sort(rng.choice(ci, size=m, replace=False))] = True
    return keep


def contiguous_run(open_time: pd.Series, interval_ms: int) -> np.ndarray:
    """For each candle, how many candles end at it without a gap (1 after a gap or at the start)."""
    ot = open_time.astype("int64").to_numpy()
    n = len(ot)
    starts = np.ones(n, dtype=bool)
    starts[1:] = np.diff(ot) != interval_ms
    last_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - last_start + 1


def build_dataset(candles: pd.DataFrame, fp: FeatureParams, sp: SplitParams, interval: str,
                  embargo: int = 0, others: dict[str, pd.DataFrame] | None = None) -> tuple[pd.DataFrame, PreprocessSpec]:
    """The whole preprocess transform. The purge between parts is :func:`~mlrisk.data.split.purge_gap`
    (``horizon + seq_len + embargo`` candles).

    Returns a table with one row per candle after the feature warmup (and from the first to the last
    row where every derivatives feature's input is known): the candle columns, the
    scaled features (named as in ``fp.names``), ``label`` (NaN = none), ``part``
    (train/val/test/purge), ``window_ok`` (a full window ending here lies inside the part) and
    ``use`` (a labelled window the stage may fit or score on; for train, after balancing).
    Where the candles have gaps (``data.gap_policy: keep``), a window (with its features'
    lookback) and a label must not span one: such windows are not ``window_ok`` and such labels
    are NaN; ``spec.split["gaps"]`` counts them. A derivatives input missing between those rows (the
    spot companion keeps its gaps: an exchange halt) is such a gap for the windows: a window (with
    its lookback) holding a row whose derivatives feature is NaN is not ``window_ok`` (its features
    stay NaN there); labels, made from the traded candles alone, are kept.
    """
    try:
        feats = compute_features(candles, fp.names, others)
    except KeyError as e:
        raise DataError(f"features.names: {e.args[0]}; pick features the data source has") from None
    w = warmup(fp.names)
    start, end = w, len(candles)  # the rows kept: after the warmup, and where the derivatives' inputs exist
    deriv = [n for n in fp.names if n in DERIVATIVES]
    if deriv:  # their inputs may start later or end earlier than the candles (funding, spot, mark, metrics data)
        ok = feats[deriv].notna().all(axis=1).to_numpy()
        if ok.any():
            start, end = max(w, int(ok.argmax())), len(ok) - int(ok[::-1].argmax())
    labels = make_labels(candles, fp.label)
    # gaps (data.gap_policy keep): a label must not reach across one, nor a window or its features' lookback
    run = contiguous_run(candles["open_time"], INTERVAL_MS[interval])
    # a derivatives input missing inside the data (a spot halt: spot keeps its gaps) is a gap for the windows
    hole = feats[deriv].isna().any(axis=1).to_numpy().copy() if deriv else np.zeros(len(candles), dtype=bool)
    hole[:start] = False
    hole[end:] = False
    win_run = run.copy()
    if hole.any():
        since = np.maximum.accumulate(np.where(hole, np.arange(len(hole)), -1))  # last hole row at or before
        win_run = np.where(since >= 0, np.minimum(run, np.arange(len(hole)) - since), run)
    h = fp.label.horizon
    label_ok = np.zeros(len(candles), dtype=bool)
    label_ok[: len(candles) - h] = run[h:] > h
    labels_dropped = int((labels.notna().to_numpy() & ~label_ok).sum())
    labels = labels.where(label_ok)
    body = candles.iloc[start:end].reset_index(drop=True)
    feats = feats.iloc[start:end].reset_index(drop=True)
    labels = labels.iloc[start:end].reset_index(drop=True)
    hole = hole[start:end]
    undefined = feats.isna() & ~(hole[:, None] & feats.columns.isin(deriv)[None, :])  # all but the derivatives' holes
    if undefined.any(axis=None):
        bad = feats.columns[undefined.any()].tolist()
        raise DataError(f"features {bad} are undefined after the warmup (zero prices, or their funding, mark, spot or "
                        "metrics data do not cover every candle?); check the data")
    purge = purge_gap(fp.label.horizon, fp.seq_len, embargo)
    split = split_rows(body["open_time"], sp, purge, min_rows=fp.seq_len + 10)
    tr0, tr1 = split.train
    train_feats = feats.iloc[tr0:tr1].to_numpy()
    if hole[tr0:tr1].any():  # fitted on known inputs only (no copy without a hole: the same sums, bit for bit)
        train_feats = train_feats[~hole[tr0:tr1]]
    clip_low, clip_high = fit_clip(train_feats, fp.clip)
    if clip_low is not None:
        train_feats = np.clip(train_feats, clip_low, clip_high)
    mean, scale = fit_scaler(train_feats)
    spec = PreprocessSpec(
        features=list(fp.names), seq_len=fp.seq_len, warmup=w, mean=mean, scale=scale,
        label=fp.label.model_dump(), n_classes=n_classes(fp.label), interval=interval,
        clip_low=clip_low, clip_high=clip_high, candles=fp.candles, metrics_lag=fp.metrics_lag,
    )
    x = spec.scale_features(feats)
    n = len(body)
    part = split.labels(n)
    window_ok = np.zeros(n, dtype=bool)
    for name in PARTS:
        s, e = split.part(name)
        window_ok[s + fp.seq_len - 1 : e] = True
    contiguous = win_run[start:end] >= fp.seq_len + w
    windows_dropped = int((window_ok & ~contiguous).sum())
    window_ok &= contiguous
    y = labels.to_numpy()
    use = window_ok & ~np.isnan(y)
    if fp.balance == "undersample":
        train_mask = use & (part == "train")
        keep = undersample(np.nan_to_num(y, nan=-1), train_mask, fp.seed)
        use = np.where(part == "train", keep, use)
    for name in PARTS:
        if not (use & (part == name)).any() and not (name == "test" and sp.method == "final"):
            raise DataError(f"the {name} part has no labelled windows: use more data or a shorter horizon/seq_len")
    out = body[[c for c in CANDLE_COLUMNS if c in body.columns]].copy()
    for j, name in enumerate(fp.names):
        out[name] = x[:, j]
    out["label"] = y
    out["part"] = part.astype(str)
    out["window_ok"] = window_ok
    out["use"] = use
    def summary(name: str) -> dict[str, Any]:
        s, e = split.part(name)
        used = use & (part == name)
        return {"rows": int(e - s), "first": out["open_time"].iloc[s].isoformat() if e > s else None,
                "last": out["open_time"].iloc[e - 1].isoformat() if e > s else None, "samples": int(used.sum()),
                "class_counts": {str(int(k)): int(v) for k, v in zip(*np.unique(y[used], return_counts=True))}}

    spec.split = {name: summary(name) for name in PARTS} | {"purge": purge}
    if windows_dropped or labels_dropped:  # only with gaps left in the data (gap_policy keep)
        spec.split["gaps"] = {"windows_dropped": windows_dropped, "labels_dropped": labels_dropped}
    return out, spec


def part_frame(ds: pd.DataFrame, part: str) -> pd.DataFrame:
    """The rows of one part, re-indexed from 0 (windows never leave a part)."""
    return ds[ds["part"] == part].reset_index(drop=True)


def window_arrays(frame: pd.DataFrame, features: list[str], only_used: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one part's rows: (scaled feature matrix float32, window-end rows, their labels).

    ``only_used`` selects the labelled (and, for train, balanced) windows; otherwise every row
    with a full window, labelled or not.
    """
    x = frame[features].to_numpy(dtype="float32")
    mask = (frame["use"] if only_used else frame["window_ok"]).to_numpy()
    ends = np.nonzero(mask)[0]
    return x, ends, frame["label"].to_numpy()[ends]
