"""The final holdout: trained around, scored once, every use logged."""

import json

import pytest

from conftest import synthetic_candles
from mlrisk.config.params import parse_params
from mlrisk.errors import DataError
from mlrisk.evaluation.holdout import holdout_fold, previous_uses, read_log, spend_holdout

pytestmark = pytest.mark.slow


def _params(**ev):
    return parse_params({
        "features": {"names": ["close_pct", "upper_wick"], "seq_len": 8},
        "train": {"layers": [{"units": 2}], "dense": [], "epochs": 1, "batch_size": 128, "patience": 0},
        "evaluate": {"holdout": 300, "walk_forward": {"train": 400, "test": 200}, **ev},
        "backtest": {"threshold": 0.0},
    })


def test_the_holdout_fold_ends_training_a_purge_before_the_holdout():
    f = holdout_fold(1500, _params())
    assert (f.test_start, f.test_end) == (1200, 1500) and f.val_start < 1200 - (1 + 8)
    with pytest.raises(DataError, match="evaluate.holdout is 0"):
        holdout_fold(1500, _params(holdout=0))


def test_spending_the_holdout_twice_is_recorded_and_reported(tmp_path):
    candles = synthetic_candles(1200, seed=4)
    log = tmp_path / "holdout.json"
    first = spend_holdout(candles, _params(), "exp-a", log, reps=100)
    assert first["previous_uses"] == 0 and first["candles"] == 300 and first["experiment"] == "exp-a"
    assert first["first"] == candles["open_time"].iloc[900].isoformat()
    assert "verdict" in first and first["trades"] >= 0
    second = spend_holdout(candles, _params(), "exp-b", log, reps=100)
    assert second["previous_uses"] == 1
    uses = read_log(log)["uses"]
    assert [u["experiment"] for u in uses] == ["exp-a", "exp-b"]
    assert len(previous_uses(read_log(log), first["first"], first["last"])) == 2
    json.loads(log.read_text())  # strict JSON


def test_a_damaged_log_is_a_clear_error(tmp_path):
    bad = tmp_path / "holdout.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="git checkout"):
        read_log(bad)
