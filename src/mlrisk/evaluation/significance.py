"""Is the model better than a baseline on the same rows? A paired block bootstrap.

Rows of a price series are autocorrelated (overlapping windows, volatility clusters), so an
i.i.d. test overstates significance. Here each row gives a paired *score difference* between the
model and a baseline (accuracy: 1 if only the model is right, -1 if only the baseline is, else 0;
log loss: the baseline's loss minus the model's), and :class:`arch.bootstrap.StationaryBootstrap`
resamples blocks of rows (mean block length from :func:`arch.bootstrap.optimal_block_length`, at
least 1) into ``reps`` bootstrap means of the difference. Differences are fractions (0.01 = 1
percentage point of accuracy) or nats.

One significance level, :data:`ALPHA`, and one bootstrap distribution give all three numbers shown:

- the interval: the two-sided ``1 - 2 ALPHA`` (90 %) percentile interval of the bootstrap means;
  its lower bound is the one-sided ``1 - ALPHA`` (95 %) lower confidence bound;
- the p-value, one-sided: the share of bootstrap means at or below zero;
- the verdict "beats": that lower bound is above zero, which is exactly ``p < ALPHA`` (the bound
  is the smallest bootstrap mean whose share of means at or below it reaches ``ALPHA``, computed
  with the same shares as the p-value, so the two can never disagree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-7
ALPHA = 0.05                 # the one significance level of every verdict (one-sided)
CI_LEVEL = 1 - 2 * ALPHA     # the two-sided interval shown; its lower bound is the one-sided 1 - ALPHA bound
MIN_ROWS = 10                # fewer paired rows than this: no interval, p = 1


def ci_label() -> str:
    """How the interval is named wherever it is shown, e.g. "90 % CI"."""
    return f"{100 * CI_LEVEL:.0f} % CI"


def bound_label() -> str:
    """What its lower bound is, e.g. "one-sided 95 % lower bound"."""
    return f"one-sided {100 * (1 - ALPHA):.0f} % lower bound"


def beats(p_value: float | None) -> bool:
    """The verdict "beats": the one-sided p-value is below :data:`ALPHA` (the interval's lower bound
    is above zero). ``None`` or NaN (no test) never beats."""
    return p_value is not None and not (isinstance(p_value, float) and math.isnan(p_value)) and p_value < ALPHA


def p_text(p_value: float, reps: int | None = None) -> str:
    """The p-value in words: ``"p = 0.0425"``, or ``"p < 0.0005"`` when no bootstrap mean was at or
    below zero (the p-value is a share of ``reps`` means, so 0 only says it is below 1/reps)."""
    if p_value == 0 and reps:
        return f"p < {1 / reps:.2g}"
    return f"p = {p_value:.3g}"


def interval_text(ci_low: float | None, ci_high: float | None, p_value: float | None = None,
                  reps: int | None = None, scale: float = 100.0, unit: str = " pp") -> str:
    """The interval and p-value as shown everywhere, e.g. ``"90 % CI [-0.19, +3.80] pp, one-sided
    p = 0.0425"`` (``scale`` 100: fractions shown in percentage points)."""
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        text = f"too few rows for a {ci_label()}"
    else:
        text = f"{ci_label()} [{scale * ci_low:+.2f}, {scale * ci_high:+.2f}]{unit}"
    if p_value is not None and not math.isnan(p_value):
        text += f", one-sided {p_text(p_value, reps)}"
    return text


def margin_text(margin: float, ci_low: float | None, ci_high: float | None, p_value: float | None,
                reps: int | None = None) -> str:
    """A margin over the best baseline (fraction) with its verdict word and interval, as the headline,
    the dashboard and ``mlrisk diff`` show it, e.g. ``"+1.91 pp, not significant (90 % CI [-0.19,
    +3.80] pp, one-sided p = 0.0731)"``: "significant" exactly when :func:`beats`."""
    word = "significant" if beats(p_value) else "not significant"
    return f"{100 * margin:+.2f} pp, {word} ({interval_text(ci_low, ci_high, p_value, reps)})"


def margin_text_of(ev: dict) -> str:
    """:func:`margin_text` of a scoring result (:func:`mlrisk.evaluation.scoring.score`,
    ``evaluate.json``): its ``margin_over_best_baseline``, ``margin_ci_low``/``_high``, ``p_value``
    and the accuracy bootstrap's ``reps``. A file from before the 90 % interval (no
    ``margin_ci_level``, or another level) shows its margin only: its interval and p-value were of
    another kind."""
    margin = ev["margin_over_best_baseline"]
    if ev.get("margin_ci_level") is None or not math.isclose(ev["margin_ci_level"], CI_LEVEL):
        return f"{100 * margin:+.2f} pp"
    reps = ((ev.get("bootstrap_vs_best") or {}).get("accuracy") or {}).get("reps")
    return margin_text(margin, ev.get("margin_ci_low"), ev.get("margin_ci_high"), ev.get("p_value"), reps)


@dataclass(frozen=True)
class PairedTest:
    """Mean score difference (model minus baseline, higher = model better) with its bootstrap interval."""

    metric: str          # "accuracy" | "log_loss"
    mean_diff: float     # fraction (accuracy points) or nats (log loss)
    ci_low: float        # the CI_LEVEL (90 %) interval's lower bound = the one-sided 1 - ALPHA lower bound
    ci_high: float
    p_value: float       # one-sided: share of bootstrap means <= 0; < ALPHA exactly when ci_low > 0
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


def percentile_bounds(means: np.ndarray) -> tuple[float, float, float]:
    """The ``CI_LEVEL`` percentile interval and the one-sided p-value of bootstrap ``means``.

    With the shares ``F(m)`` = (number of means <= m) / len(means), the lower bound is the smallest
    mean with ``F >= ALPHA``, the upper the smallest with ``F >= 1 - ALPHA`` (the inverted-CDF
    quantiles), and ``p = F(0)``. ``F`` is non-decreasing, so ``lower > 0`` exactly when ``p < ALPHA``.
    Returns ``(lower, upper, p)``.
    """
    s = np.sort(np.asarray(means, dtype="float64"))
    b = len(s)
    shares = np.arange(1, b + 1) / b   # F at each sorted mean (the last copy of a tie gets the full share)
    lo = float(s[np.argmax(shares >= ALPHA)])
    hi = float(s[np.argmax(shares >= 1 - ALPHA)])
    p = float(np.searchsorted(s, 0.0, side="right") / b)
    return lo, hi, p


def block_bootstrap_test(diff: np.ndarray, metric: str, reps: int = 2000, seed: int = 0) -> PairedTest:
    """Stationary block bootstrap of the mean of ``diff`` (rows in time order): its ``CI_LEVEL``
    percentile interval and one-sided p-value (:func:`percentile_bounds`)."""
    from arch.bootstrap import StationaryBootstrap, optimal_block_length

    d = np.asarray(diff, dtype="float64")
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < MIN_ROWS:  # too few rows to resample: no interval, never significant
        return PairedTest(metric, mean, float("nan"), float("nan"), 1.0, 1.0, n, 0)
    if np.all(d == d[0]):  # no variation (e.g. identical predictions): every bootstrap mean is the mean
        return PairedTest(metric, mean, mean, mean, 0.0 if mean > 0 else 1.0, 1.0, n, 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate autocorrelation gives inf: checked below
        block = float(optimal_block_length(d)["stationary"].iloc[0])
    block = max(1.0, block if np.isfinite(block) else 1.0)
    bs = StationaryBootstrap(block, d, seed=np.random.default_rng(seed))
    means = np.array([data[0][0].mean() for data in bs.bootstrap(reps)])
    lo, hi, p = percentile_bounds(means)
    return PairedTest(metric, mean, lo, hi, p, block, n, reps)


def paired_tests(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray, reps: int = 2000,
                 seed: int = 0) -> dict[str, PairedTest]:
    """Accuracy and log-loss tests of the model against one baseline, on the same rows."""
    return {
        "accuracy": block_bootstrap_test(accuracy_differences(y, p_model, p_base), "accuracy", reps, seed),
        "log_loss": block_bootstrap_test(log_loss_differences(y, p_model, p_base), "log_loss", reps, seed),
    }
