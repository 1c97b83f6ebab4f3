"""Walk-forward fold plans."""

import pytest

from mlrisk.config.evaluate import WalkForwardParams
from mlrisk.errors import DataError
from mlrisk.evaluation.folds import plan_folds


def test_expanding_folds_tile_the_out_of_sample_period_without_overlap():
    wf = WalkForwardParams(train=1000, test=300, val=0.2)
    folds = plan_folds(2600, wf, gap=50)
    assert folds[0].test_start == 1050 and folds[-1].test_end == 2600
    for a, b in zip(folds, folds[1:]):
        assert a.test_end == b.test_start  # consecutive, no overlap
    for f in folds:
        assert f.start == 0 and f.val_start < f.test_start - 50  # training ends a full gap before the test
        assert f.test_end - f.test_start >= 300 or f is folds[-1]


def test_rolling_folds_keep_their_length_and_move_forward():
    wf = WalkForwardParams(window="rolling", train=1000, test=400)
    folds = plan_folds(3000, wf, gap=60)
    assert [f.test_start - 60 - f.start for f in folds] == [1000] * len(folds)
    assert [f.start for f in folds] == sorted({f.start for f in folds})


def test_a_short_remainder_joins_the_last_block_and_max_folds_and_holdout_cut():
    wf = WalkForwardParams(train=1000, test=300)
    folds = plan_folds(1000 + 10 + 300 + 100, wf, gap=10)
    assert len(folds) == 1 and folds[0].test_end == 1410
    assert len(plan_folds(5000, WalkForwardParams(train=1000, test=300, max_folds=2), gap=10)) == 2
    assert plan_folds(5000, wf, gap=10, end=4000)[-1].test_end == 4000


def test_too_little_data_is_a_clear_error():
    with pytest.raises(DataError, match="cannot hold one fold"):
        plan_folds(500, WalkForwardParams(train=1000), gap=10)
