import pandas as pd
import pytest

from conftest import synthetic_candles
from mlrisk.config import parse_params
from mlrisk.evaluation.walkforward import walk_forward

pytestmark = pytest.mark.slow


def test_walk_forward_expanding_folds():
    params = parse_params({
        "features": {"names": ["close_pct", "upper_wick"], "seq_len": 8},
        "train": {"layers": [{"units": 4}], "dense": [], "epochs": 1, "batch_size": 128, "patience": 0},
    })
    table, summary = walk_forward(synthetic_candles(1500, seed=2), params, folds=3)
    assert table["fold"].tolist() == [1, 2, 3]
    first = pd.to_datetime(table["test_first"])
    assert first.is_monotonic_increasing and first.is_unique  # blocks move forward in time
    assert (table["n_test"] > 200).all()
    assert summary["folds"] == 3 and 0.3 < summary["accuracy_mean"] < 0.7 and summary["accuracy_std"] >= 0
    # each fold's training data ends before its test block
    assert (pd.to_datetime(table["train_first"]) < first).all()
