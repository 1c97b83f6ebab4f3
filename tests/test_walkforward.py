import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config.params import parse_params

pytestmark = pytest.mark.slow


@pytest.fixture
def eager_training(monkeypatch):
    """For a test that trains dozens of tiny models of a few batches each: compiling each one's
    training and prediction functions into graphs costs about 2 s a model, three times the training
    itself, so there Keras runs them eagerly (``run_eagerly=True``): the same layers, loss and optimiser
    steps, without the tracing (with many batches eager is slower: the other tests and the pipeline
    train in graph mode)."""
    import keras

    compile_ = keras.Model.compile

    def eager(self, *args, **kwargs):
        return compile_(self, *args, **{**kwargs, "run_eagerly": True})

    monkeypatch.setattr(keras.Model, "compile", eager)


def test_walk_forward_expanding_folds():
    from mlrisk.evaluation.walkforward import run_walk_forward

    params = parse_params({
        "features": {"names": ["close_pct", "upper_wick"], "seq_len": 8},
        "train": {"layers": [{"units": 4}], "dense": [], "epochs": 1, "batch_size": 128, "patience": 0},
        "evaluate": {"walk_forward": {"train": 400, "test": 350}},
    })
    res = run_walk_forward(synthetic_candles(1500, seed=2), params, reps=100)
    table = res.folds
    assert table["fold"].tolist() == [1, 2, 3]
    first = pd.to_datetime(table["test_first"])
    assert first.is_monotonic_increasing and first.is_unique  # blocks move forward in time
    assert (table["n_test"] > 200).all()
    assert 0.3 < res.pooled["model"]["accuracy"] < 0.7 and res.pooled["model"]["n"] == table["n_test"].sum()
    assert "gbt" in res.pooled["baselines"] and {"gbt_accuracy", "margin_ci_low", "p_value", "beats_best_baseline"} <= set(table.columns)
    # each fold's training data ends before its test block
    assert (pd.to_datetime(table["train_first"]) < first).all()


def planted_candles(n: int, seed: int, lag: int = 4, strength: float = 0.8):
    """A random walk whose every return repeats the sign of the return ``lag + 1`` candles earlier with
    probability ``strength``: learnable from a window of returns, invisible to the baselines, which
    see the last three candles at most."""
    import numpy as np

    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.01, n)
    for t in range(lag + 1, n):
        keep = rng.uniform() < strength
        r[t] = (1 if keep else -1) * np.sign(r[t - 1 - lag]) * abs(r[t])
    c = synthetic_candles(n, seed=seed)
    close = 100 * np.exp(np.cumsum(r))
    c["close"], c["open"] = close, np.r_[100.0, close[:-1]]
    c["high"], c["low"] = np.maximum(c["open"], c["close"]) * 1.001, np.minimum(c["open"], c["close"]) * 0.999
    return c


def test_a_planted_pattern_is_found_in_every_fold_and_judged_significant(tmp_path):
    from mlrisk.evaluation.walkforward import run_walk_forward

    params = parse_params({
        "features": {"names": ["close_pct"], "seq_len": 8},
        "train": {"layers": [{"units": 8}], "dense": [], "epochs": 8, "batch_size": 64, "patience": 3, "learning_rate": 0.01},
        "evaluate": {"walk_forward": {"train": 1500, "test": 500}},
    })
    candles = planted_candles(3000, seed=1)
    res = run_walk_forward(candles, params, cache_dir=tmp_path, reps=300)
    assert len(res.folds) == 3 and res.cached == 0
    assert (res.folds["margin_ci_low"] > 0).all() and res.folds["beats_best_baseline"].all(), res.folds
    assert res.pooled["bootstrap_vs_best"]["accuracy"]["p_value"] < 0.01
    pred = res.predictions
    assert pred["open_time"].is_monotonic_increasing and pred["open_time"].is_unique
    assert pred["fold"].tolist() == sorted(pred["fold"]) and set(pred["fold"]) == {1, 2, 3}
    assert {"p_majority", "p_persistence", "p_logistic"} <= set(pred.columns)
    # a second run reads every fold back from the cache and gives the same predictions
    again = run_walk_forward(candles, params, cache_dir=tmp_path, reps=300)
    assert again.cached == 3
    pd.testing.assert_frame_equal(again.predictions, pred)
    # changing the data of the last fold only retrains that fold
    changed = candles.copy()
    changed.loc[2990, "close"] *= 1.001
    assert run_walk_forward(changed, params, cache_dir=tmp_path, reps=50).cached == 2


def test_a_random_walk_is_judged_not_significant_in_95_percent_of_40_seeds(eager_training):
    from mlrisk.evaluation.walkforward import run_walk_forward

    params = parse_params({
        "features": {"names": ["close_pct", "upper_wick"], "seq_len": 8},
        "train": {"layers": [{"units": 2}], "dense": [], "epochs": 1, "batch_size": 128, "patience": 0},
        "evaluate": {"walk_forward": {"train": 500, "test": 400, "max_folds": 1}},
    })
    p_values = [run_walk_forward(synthetic_candles(950, seed=100 + s), params, reps=200)
                .pooled["bootstrap_vs_best"]["accuracy"]["p_value"] for s in range(40)]
    assert sum(p < 0.05 for p in p_values) <= 2, sorted(p_values)[:5]


def test_walk_forward_with_another_symbol_s_features(tmp_path):
    """A lead-lag pattern: BTC's next return follows ETH's last one. The ETHUSDT:close_pct feature
    carries it to the model (and to the baselines, which see the same features); the fold key includes
    ETH's candles, so changing them retrains."""
    import numpy as np

    from mlrisk.evaluation.walkforward import run_walk_forward

    rng = np.random.default_rng(3)
    eth = synthetic_candles(1400, seed=8, price=50.0)
    eth_r = np.log(eth["close"] / eth["close"].shift(1)).fillna(0).to_numpy()
    r = np.abs(rng.normal(0, 0.01, 1400)) * np.where(rng.uniform(size=1400) < 0.8, np.sign(np.r_[0, eth_r[:-1]]), -np.sign(np.r_[0, eth_r[:-1]]))
    btc = synthetic_candles(1400, seed=9)
    close = 100 * np.exp(np.cumsum(r))
    btc["close"], btc["open"] = close, np.r_[100.0, close[:-1]]
    btc["high"], btc["low"] = np.maximum(btc["open"], btc["close"]) * 1.001, np.minimum(btc["open"], btc["close"]) * 0.999
    params = parse_params({
        "data": {"source": "binance", "start": "2024-01-01", "others": ["ETHUSDT"]},
        "features": {"names": ["close_pct", "ETHUSDT:close_pct"], "seq_len": 4},
        "train": {"layers": [{"units": 8}], "dense": [], "epochs": 6, "batch_size": 64, "learning_rate": 0.01, "patience": 2},
        "evaluate": {"walk_forward": {"train": 900, "test": 480}},
    })
    res = run_walk_forward(btc, params, cache_dir=tmp_path, reps=200, others={"ETHUSDT": eth})
    assert res.pooled["model"]["accuracy"] > 0.7 and res.pooled["baselines"]["logistic"]["accuracy"] > 0.7
    changed = eth.copy()
    changed.loc[1390, "close"] *= 1.01
    assert run_walk_forward(btc, params, cache_dir=tmp_path, reps=50, others={"ETHUSDT": changed}).cached == 0
