"""Batch inference: the same numbers as Keras' own ``predict``, one traced graph per architecture,
and no TensorFlow retracing warning from a walk-forward run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from mlrisk.config.train import LayerParams, TrainParams
from mlrisk.model.inference import p_up_from_output, predict_p_up
from mlrisk.model.network import build_model

pytestmark = pytest.mark.slow

TP = TrainParams(layers=[LayerParams(type="lstm", units=6, dropout=0.2, batch_norm=True)], dense=[4], dense_dropout=0.1)


def _windows(x: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    return np.stack([x[e - seq_len + 1:e + 1] for e in ends]).astype("float32")


def test_predict_p_up_equals_keras_predict_for_each_model_of_one_architecture():
    """Two models of the same architecture share one traced graph, yet each is run with its own
    weights (including batch-norm statistics); a short last batch changes nothing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype("float32")
    ends = np.arange(9, 300, 2)
    models = [build_model(TP, seq_len=10, n_features=3) for _ in range(2)]
    for seed, m in enumerate(models):
        m.set_weights([np.random.default_rng(seed).normal(0, 0.5, w.shape).astype(w.dtype) for w in m.get_weights()])
    got = [predict_p_up(m, x, ends, seq_len=10, batch_size=64) for m in models]   # 146 windows: 64, 64, 18
    for m, p in zip(models, got):
        want = p_up_from_output(m.predict(_windows(x, ends, 10), batch_size=64, verbose=0))
        np.testing.assert_allclose(p, want, atol=1e-6, rtol=0)
    assert np.abs(got[0] - got[1]).max() > 1e-3   # not the first model's weights twice


WALK_FORWARD = """
import sys
sys.path.insert(0, "tests")
from conftest import synthetic_candles
from mlrisk.config.params import parse_params
from mlrisk.evaluation.walkforward import run_walk_forward

params = parse_params({
    "features": {"names": ["close_pct", "upper_wick"], "seq_len": 8},
    "train": {"layers": [{"units": 4}], "dense": [], "epochs": 2, "batch_size": 128, "patience": 0},
    "evaluate": {"walk_forward": {"train": 600, "test": 600}},
})
res = run_walk_forward(synthetic_candles(2400, seed=2), params, reps=20)
print("folds", len(res.folds))
"""


def test_a_walk_forward_prints_no_tensorflow_retracing_warning():
    """Three folds, each a new model whose ~600 test windows come in batches of 512 and the rest:
    Keras' ``predict`` traced its predict function twice per fold (a new model, then a new batch
    size) and TensorFlow warned about retracing from the third fold on. Run in a fresh process: TensorFlow warns at most twice per function and
    process, so an earlier test in this one could hide the warning."""
    r = subprocess.run([sys.executable, "-c", WALK_FORWARD], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "folds 3"
    assert "retracing" not in r.stderr, r.stderr[-2000:]
