"""The gradient-boosted-trees baseline and its lagged inputs."""

import numpy as np

from mlrisk.evaluation.baselines import gradient_boosting, lagged_features, logistic


def test_lagged_features_never_read_after_the_window_end():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    ends = np.arange(10, 60)
    a = lagged_features(x, ends, 2)
    x2 = x.copy()
    x2[60:] = 99.0  # the future of every end
    np.testing.assert_array_equal(a, lagged_features(x2, ends, 2))
    assert a.shape == (50, 9) and np.array_equal(a[:, 3:6], x[ends - 1])


def test_gbt_learns_a_nonlinear_pattern_that_logistic_cannot():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, 2))
    y = (np.abs(x[:, 0]) > 0.7).astype(int)  # symmetric in x0: no linear signal
    tr, te = slice(0, 4000), slice(4000, None)
    acc = lambda p: np.mean((p >= 0.5) == y[te])  # noqa: E731
    assert acc(gradient_boosting(x[tr], y[tr], x[te])) > 0.95
    assert acc(logistic(x[tr], y[tr], x[te])) < 0.65
