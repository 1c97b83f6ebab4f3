"""One purge formula (issue 16): the split, the walk-forward folds and the holdout fold leave the same
gap of ``horizon + seq_len + embargo`` candles (:func:`mlrisk.data.split.purge_gap`) between parts.
Distinct horizon, seq_len and embargo, so a caller that drops or changes a term shows."""

from __future__ import annotations

import pytest

from conftest import synthetic_candles
from mlrisk.config.params import parse_params
from mlrisk.config.split import SplitParams
from mlrisk.data.preprocess import build_dataset
from mlrisk.data.split import purge_gap
from mlrisk.evaluation import walkforward
from mlrisk.evaluation.holdout import holdout_fold

H, L, E = 3, 8, 5


def _params():
    return parse_params({
        "features": {"names": ["close_pct", "upper_wick"], "seq_len": L, "label": {"horizon": H}},
        "train": {"layers": [{"units": 2}], "dense": [], "epochs": 1, "batch_size": 128, "patience": 0},
        "evaluate": {"holdout": 300, "walk_forward": {"train": 400, "test": 200, "embargo": E, "window": "expanding"}},
    })


def test_purge_gap_in_candles():
    assert purge_gap(H, L, E) == 16 and purge_gap(H, L) == 11


def test_the_split_records_and_leaves_the_purge_gap():
    params = _params()
    ds, spec = build_dataset(synthetic_candles(1500), params.features,
                             SplitParams(method="date", val_start="2024-01-30", test_start="2024-02-20"), "1h", embargo=E)
    assert spec.split["purge"] == purge_gap(H, L, E)
    part = ds["part"].to_numpy()
    for a, b in (("train", "val"), ("val", "test")):
        last_a = max(i for i, p in enumerate(part) if p == a)
        first_b = min(i for i, p in enumerate(part) if p == b)
        assert first_b - last_a - 1 == purge_gap(H, L, E)


def test_walk_forward_plans_its_folds_with_the_same_gap(monkeypatch):
    seen = {}

    class Planned(Exception):
        pass

    def plan(n_rows, wf, gap, end=None):
        seen["gap"] = gap
        raise Planned

    monkeypatch.setattr(walkforward, "plan_folds", plan)
    with pytest.raises(Planned):
        walkforward.run_walk_forward(synthetic_candles(1500), _params())
    assert seen["gap"] == purge_gap(H, L, E)


def test_the_holdout_fold_ends_training_the_same_gap_before_the_holdout():
    params = _params()
    f = holdout_fold(1500, params)
    train_end = f.test_start - purge_gap(H, L, E)  # expanding window: training starts at row 0
    assert (f.start, f.test_start) == (0, 1200)
    assert f.val_start == train_end - max(1, int(round(train_end * params.evaluate.walk_forward.val)))
