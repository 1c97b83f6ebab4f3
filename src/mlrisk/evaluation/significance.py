"""Is the model better than a baseline on the same rows? A paired block bootstrap.

Rows of a price series are autocorrelated (overlapping windows, volatility clusters), so an
i.i.d. test overstates significance. Here each row gives a paired *score difference* between the
model and a baseline (accuracy: 1 if only the model is right, -1 if only the baseline is, else 0;
log loss: the baseline's loss minus the model's), and :class:`arch.bootstrap.StationaryBootstrap`
resamples blocks of rows (mean block length from :func:`arch.bootstrap.optimal_block_length`, at
least 1) to give a confidence interval of the mean difference and a one-sided p-value that the
model is better (the share of bootstrap means of the *centred* differences at or above the
observed mean). Differences are fractions (0.01 = 1 percentage point of accuracy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-7


@dataclass(frozen=True)
class PairedTest:
    """Mean score difference (model minus baseline, higher = model better) with its bootstrap CI."""

    metric: str          # "accuracy" | "log_loss"
    mean_diff: float     # fraction (accuracy points) or nats (log loss)
    ci_low: float
    ci_high: float
    p_value: float       # one-sided: P(mean difference >= observed | no difference)
    block_length: float  # mean block length of the stationary bootstrap, rows
    n: int
    reps: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def accuracy_differences(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray) -> np.ndarray:
    """Per row: model correct minus baseline correct (-1, 0 or 1); a prediction is up when p >= 0.5."""
    y = np.asarray(y).astype(int)
    right_m = (np.asarray(p_model) >= 0.5).astype(int) == y
    right_b = (np.asarray(p_base) >= 0.5).astype(int) == y
    return right_m.astype(float) - right_b.astype(float)


def log_loss_differences(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray) -> np.ndarray:
    """Per row: baseline log loss minus model log loss (positive = the model is better), nats."""
    y = np.asarray(y).astype(int)

    def loss(p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    return loss(p_base) - loss(p_model)


def block_bootstrap_test(diff: np.ndarray, metric: str, reps: int = 2000, seed: int = 0,
                         confidence: float = 0.95) -> PairedTest:
    """Stationary block bootstrap of the mean of ``diff`` (rows in time order)."""
    from arch.bootstrap import StationaryBootstrap, optimal_block_length

    d = np.asarray(diff, dtype="float64")
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 10 or np.all(d == d[0]):
        # too few rows, or no variation at all (e.g. identical predictions): nothing to resample
        return PairedTest(metric, mean, mean, mean, 1.0 if not mean > 0 else 0.0, 1.0, n, 0)
    block = float(optimal_block_length(d)["stationary"].iloc[0])
    block = max(1.0, block if np.isfinite(block) else 1.0)
    bs = StationaryBootstrap(block, d, seed=np.random.default_rng(seed))
    means = np.array([data[0][0].mean() for data in bs.bootstrap(reps)])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    centred = means - mean  # the bootstrap distribution shifted to the null of no difference
    p = float((1 + np.sum(centred >= mean)) / (reps + 1))
    return PairedTest(metric, mean, float(lo), float(hi), p, block, n, reps)


def paired_tests(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray, reps: int = 2000,
                 seed: int = 0) -> dict[str, PairedTest]:
    """Accuracy and log-loss tests of the model against one baseline, on the same rows."""
    return {
        "accuracy": block_bootstrap_test(accuracy_differences(y, p_model, p_base), "accuracy", reps, seed),
        "log_loss": block_bootstrap_test(log_loss_differences(y, p_model, p_base), "log_loss", reps, seed),
    }
