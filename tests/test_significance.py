"""The paired block-bootstrap test of model vs baseline."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrisk.evaluation.significance import (ALPHA, CI_LEVEL, accuracy_differences, beats, block_bootstrap_test,
                                            log_loss_differences, paired_tests, percentile_bounds)


def test_differences_by_hand():
    y = np.array([1, 0, 1, 0])
    pm = np.array([0.9, 0.2, 0.4, 0.6])   # right, right, wrong, wrong
    pb = np.array([0.6, 0.7, 0.7, 0.4])   # right, wrong, right, right
    assert accuracy_differences(y, pm, pb).tolist() == [0.0, 1.0, -1.0, -1.0]
    d = log_loss_differences(y, pm, pb)
    assert d[0] == pytest.approx(-np.log(0.6) + np.log(0.9))


def test_a_real_edge_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 2, n)
    base = np.full(n, 0.5 + 1e-3)  # always up
    good = np.where(rng.uniform(size=n) < 0.58, y, 1 - y) * 0.2 + 0.4  # right 58 % of the time
    t = paired_tests(y, good, base, reps=500)
    assert t["accuracy"].p_value < 0.01 and t["accuracy"].ci_low > 0
    noise_p = [paired_tests(y, rng.uniform(0.4, 0.6, n), base, reps=300, seed=s)["accuracy"].p_value for s in range(10)]
    assert sum(p < 0.05 for p in noise_p) <= 2


def test_autocorrelated_differences_widen_the_interval():
    """Blocks of identical differences (strongly autocorrelated rows) must not look like n independent rows."""
    rng = np.random.default_rng(1)
    blocks = rng.choice([-1.0, 1.0], 60)
    d = np.repeat(blocks, 50) + 0.02  # 3000 rows, only 60 independent pieces
    iid_half_width = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    t = block_bootstrap_test(d, "accuracy", reps=500)
    assert (t.ci_high - t.ci_low) / 2 > 3 * iid_half_width
    assert t.block_length > 5


def test_identical_predictions_are_not_significant():
    y = np.array([1, 0] * 50)
    p = np.full(100, 0.7)
    t = paired_tests(y, p, p)["accuracy"]
    assert t.mean_diff == 0 and t.p_value == 1.0 and not beats(t.p_value)


def test_one_level_gives_the_interval_and_the_verdict():
    assert ALPHA == 0.05 and CI_LEVEL == pytest.approx(0.90)


def test_percentile_bounds_by_hand():
    """20 means -0.09..+0.10: one (5 %) at or below -0.09, ten at or below 0.00."""
    means = np.arange(-9, 11) / 100
    lo, hi, p = percentile_bounds(np.random.default_rng(0).permutation(means))
    assert (lo, hi, p) == (-0.09, 0.09, 0.5)
    lo, _, p = percentile_bounds(means + 0.095)  # none at or below zero: the lower bound +0.005, p = 0
    assert lo == pytest.approx(0.005) and p == 0.0
    lo, _, p = percentile_bounds(means + 0.09)   # exactly one mean (5 %) at zero: p = ALPHA, the bound is 0
    assert lo == 0.0 and p == ALPHA and not beats(p)


# Bootstrap means on a grid with ties and exact zeros (as accuracy differences give: multiples of 1/n),
# any number of replicates, so that share == ALPHA and near-ties are exercised.
_means = st.integers(1, 400).flatmap(lambda b: st.lists(st.integers(-30, 30), min_size=b, max_size=b)).map(
    lambda v: np.array(v, dtype="float64") / 30)


@settings(max_examples=400, deadline=None)
@given(_means)
def test_the_lower_bound_is_above_zero_exactly_when_p_is_below_alpha(means):
    lo, hi, p = percentile_bounds(means)
    assert (lo > 0) == (p < ALPHA) == beats(p)
    assert lo <= hi and 0 <= p <= 1


@settings(max_examples=25, deadline=None)
@given(st.integers(10, 300), st.floats(-0.3, 0.3), st.integers(0, 2**31), st.sampled_from([19, 20, 21, 200]))
def test_bootstrap_tests_of_random_difference_series_never_disagree(n, drift, seed, reps):
    """Whole tests of random paired series (accuracy-like -1/0/1 and continuous): the verdict from the
    p-value and the verdict from the interval's lower bound are the same."""
    rng = np.random.default_rng(seed)
    for d in (np.clip(np.round(rng.normal(drift, 0.8, n)), -1, 1), rng.normal(drift, 1.0, n)):
        t = block_bootstrap_test(d, "accuracy", reps=reps, seed=seed)
        assert (t.ci_low > 0) == beats(t.p_value), t
        assert t.ci_low <= t.ci_high


def test_too_few_rows_are_never_significant():
    t = block_bootstrap_test(np.ones(5) * [1, 0, 1, 1, 1], "accuracy")
    assert t.p_value == 1.0 and not beats(t.p_value) and np.isnan(t.ci_low)
