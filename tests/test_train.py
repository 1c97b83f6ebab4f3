"""Training on tiny models: deterministic, able to learn, honest on noise."""

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config.features import FeatureParams, LabelParams
from mlrisk.config.split import SplitParams
from mlrisk.config.train import LayerParams, TrainParams
from mlrisk.evaluation.baselines import baseline_probabilities
from mlrisk.evaluation.scoring import score
from mlrisk.data.preprocess import build_dataset, part_frame, window_arrays
from mlrisk.model.training import class_weights, fit
from mlrisk.model.inference import predict_p_up

pytestmark = pytest.mark.slow

TINY = TrainParams(layers=[LayerParams(units=8)], dense=[8], epochs=4, batch_size=64, learning_rate=0.01, patience=0, seed=7)
FP = FeatureParams(names=["close_pct", "upper_wick", "lower_wick"], seq_len=8, label=LabelParams(horizon=1))


def alternating_candles(n: int, seed: int = 0) -> pd.DataFrame:
    """A market whose next move is always opposite to the last one (sizes random): fully predictable."""
    c = synthetic_candles(n, seed=seed)
    rng = np.random.default_rng(seed)
    r = np.abs(rng.normal(0.01, 0.004, n)) * np.where(np.arange(n) % 2 == 0, 1, -1)
    close = 100 * np.exp(np.cumsum(r))
    c["open"] = np.r_[100, close[:-1]]
    c["close"] = close
    c["high"] = np.maximum(c["open"], close) * 1.001
    c["low"] = np.minimum(c["open"], close) * 0.999
    return c


def _run(candles: pd.DataFrame, tp: TrainParams = TINY):
    ds, spec = build_dataset(candles, FP, SplitParams(train=0.6, val=0.2), "1h")
    fr = {p: part_frame(ds, p) for p in ("train", "val", "test")}
    arr = {p: window_arrays(fr[p], spec.features) for p in fr}
    res = fit(tp, spec.seq_len, spec.n_classes, arr["train"], arr["val"], verbose=0)
    x, ends, y = arr["test"]
    p = predict_p_up(res.model, x, ends, spec.seq_len)
    s = score(y.astype(int), p, baseline_probabilities(fr["train"], fr["test"], spec.features, ends))
    return res, s


def test_training_is_deterministic():
    c = synthetic_candles(900, seed=3)
    a, sa = _run(c)
    b, sb = _run(c)
    wa, wb = a.model.get_weights(), b.model.get_weights()
    assert len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert a.history == b.history and sa["model"] == sb["model"]
    c2, _ = _run(c, TINY.model_copy(update={"seed": 8}))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, c2.model.get_weights()))  # the seed matters


def test_the_pipeline_can_learn_a_predictable_market():
    res, s = _run(alternating_candles(1500), TINY.model_copy(update={"epochs": 8}))
    assert s["model"]["accuracy"] > 0.95
    assert s["model"]["roc_auc"] > 0.95


def test_on_a_random_walk_the_model_does_not_beat_the_baselines_significantly():
    res, s = _run(synthetic_candles(3000, seed=11))
    assert not s["beats_best_baseline"] and s["margin_ci_low"] <= 0, s["verdict"]
    assert abs(s["model"]["accuracy"] - 0.5) < 0.05


def test_balanced_class_weights():
    w = class_weights(np.array([1, 1, 1, 0]), 2)
    assert w == {0: 2.0, 1: 4 / 6}


def test_predictor_matches_batch_predictions(tmp_path):
    from mlrisk.model.inference import Predictor

    c = synthetic_candles(700, seed=5)
    ds, spec = build_dataset(c, FP, SplitParams(train=0.6, val=0.2), "1h")
    fr = {p: part_frame(ds, p) for p in ("train", "val", "test")}
    res = fit(TINY.model_copy(update={"epochs": 1}), spec.seq_len, 2, window_arrays(fr["train"], spec.features),
              window_arrays(fr["val"], spec.features), verbose=0)
    res.model.save(tmp_path / "m.keras")
    spec.save(tmp_path / "p.json")
    pred = Predictor(tmp_path / "m.keras", tmp_path / "p.json")
    x, ends, _ = window_arrays(fr["test"], spec.features, only_used=False)
    batch = predict_p_up(res.model, x, ends[-1:], spec.seq_len)[0]
    live = pred.predict_latest(c)  # raw candles in, same features, same scaler
    assert live == pytest.approx(batch, abs=1e-6)
