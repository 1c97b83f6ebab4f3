"""The paired block-bootstrap test of model vs baseline."""

import numpy as np
import pytest

from mlrisk.evaluation.significance import accuracy_differences, block_bootstrap_test, log_loss_differences, paired_tests


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
    assert t.mean_diff == 0 and t.p_value == 1.0
