"""How much of a backtest's Sharpe ratio survives the number of things that were tried?

Formulas written out here, because no maintained package implements them correctly (vectorbt's
deflated Sharpe uses excess kurtosis where the formula needs the raw kurtosis):

- **Probabilistic Sharpe ratio** (Bailey & López de Prado, 2012): the probability that the true
  Sharpe ratio exceeds ``sr_benchmark``, given the observed per-period Sharpe ``sr`` over ``n``
  returns with skewness ``skew`` and raw (non-excess, normal = 3) kurtosis ``kurt``:
  ``PSR = Phi((sr - sr*) * sqrt(n - 1) / sqrt(1 - skew*sr + (kurt - 1)/4 * sr**2))``.
- **Expected maximum Sharpe ratio** of ``trials`` independent trials whose Sharpe ratios have
  variance ``var_sr`` and mean 0: ``sqrt(var_sr) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))``,
  ``g`` the Euler-Mascheroni constant, ``Z`` the standard normal quantile.
- **Deflated Sharpe ratio** (Bailey & López de Prado, 2014): the PSR against that expected maximum.
- **Probability of backtest overfitting** by combinatorially symmetric cross-validation
  (Bailey, Borwein, López de Prado & Zhu, 2017): split the candles into ``S`` blocks; for every
  choice of half the blocks as in-sample, pick the in-sample best combination and see where it
  ranks out of sample; PBO is the share of choices where it ranks at or below the median.

Every Sharpe ratio here is **per period** (per candle), not annualised: divide an annualised one
by ``sqrt(periods per year)`` first.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import kurtosis as _kurtosis, norm, skew as _skew

EULER_GAMMA = 0.5772156649015329


def sharpe_per_period(returns: np.ndarray) -> float:
    """Mean over standard deviation (ddof 1) of per-period returns; 0 when they do not vary."""
    r = np.asarray(returns, dtype="float64")
    if len(r) < 2:
        return 0.0
    sd = r.std(ddof=1)
    return float(r.mean() / sd) if sd > 0 else 0.0


def probabilistic_sharpe_ratio(sr: float, n: int, skew: float = 0.0, kurt: float = 3.0, sr_benchmark: float = 0.0) -> float:
    """P(true per-period Sharpe > ``sr_benchmark``); ``kurt`` is the raw kurtosis (3 for normal returns)."""
    if n < 2:
        return float("nan")
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr ** 2
    if var <= 0:
        return float("nan")
    return float(norm.cdf((sr - sr_benchmark) * math.sqrt(n - 1) / math.sqrt(var)))


def expected_max_sharpe(var_sr: float, trials: int) -> float:
    """Expected maximum of ``trials`` Sharpe ratios drawn with variance ``var_sr`` under a true Sharpe of 0."""
    if trials <= 1 or var_sr <= 0:
        return 0.0
    z1 = norm.ppf(1.0 - 1.0 / trials)
    z2 = norm.ppf(1.0 - 1.0 / (trials * math.e))
    return float(math.sqrt(var_sr) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(sr: float, n: int, skew: float, kurt: float, var_sr: float, trials: int) -> float:
    """PSR against the Sharpe ratio the best of ``trials`` pure-noise strategies would show."""
    return probabilistic_sharpe_ratio(sr, n, skew, kurt, expected_max_sharpe(var_sr, trials))


def sharpe_stats(returns: np.ndarray) -> dict[str, float]:
    """Per-period Sharpe, skewness and raw kurtosis of a return series, and its length."""
    r = np.asarray(returns, dtype="float64")
    varies = len(r) > 2 and r.std() > 0
    return {"sr": sharpe_per_period(r), "n": int(len(r)),
            "skew": float(_skew(r)) if varies else 0.0,
            "kurt": float(_kurtosis(r, fisher=False)) if varies else 3.0}


def deflated_sharpe_of_sweep(returns: np.ndarray, chosen: int, extra_trials: int = 0) -> dict[str, float]:
    """PSR and DSR of column ``chosen`` of ``returns`` (periods x combinations), counting every
    column (plus ``extra_trials`` experiments run elsewhere) as a trial, with the variance of the
    columns' per-period Sharpe ratios as the trials' variance."""
    r = np.asarray(returns, dtype="float64")
    srs = np.array([sharpe_per_period(r[:, j]) for j in range(r.shape[1])])
    st = sharpe_stats(r[:, chosen])
    trials = r.shape[1] + max(0, int(extra_trials))
    var_sr = float(srs.var(ddof=1)) if len(srs) > 1 else 0.0
    sr0 = expected_max_sharpe(var_sr, trials)
    return {"sharpe_per_period": st["sr"], "psr": probabilistic_sharpe_ratio(st["sr"], st["n"], st["skew"], st["kurt"]),
            "dsr": probabilistic_sharpe_ratio(st["sr"], st["n"], st["skew"], st["kurt"], sr0),
            "expected_max_sharpe_per_period": sr0, "trials": trials}


def pbo_cscv(returns: np.ndarray, blocks: int = 16) -> dict[str, float]:
    """Probability of backtest overfitting of choosing the best of the columns of ``returns``
    (periods x combinations) by per-period Sharpe ratio, by combinatorially symmetric
    cross-validation over ``blocks`` (even) contiguous blocks of periods: every one of the
    C(blocks, blocks/2) choices of in-sample blocks is scored. Returns PBO (a fraction), the number
    of splits and the median logit of the chosen combination's out-of-sample relative rank."""
    r = np.asarray(returns, dtype="float64")
    t, n = r.shape
    if blocks % 2 or blocks < 2:
        raise ValueError("blocks must be even and >= 2")
    if n < 2 or t < 2 * blocks:
        return {"pbo": float("nan"), "splits": 0, "logit_median": float("nan")}
    parts = np.array_split(np.arange(t), blocks)
    count = np.array([len(p) for p in parts], dtype="float64")
    total = np.stack([r[p].sum(axis=0) for p in parts])          # blocks x n
    squares = np.stack([(r[p] ** 2).sum(axis=0) for p in parts])
    member = np.array([[b in c for b in range(blocks)] for c in itertools.combinations(range(blocks), blocks // 2)],
                      dtype="float64")                              # splits x blocks, 1 = in sample

    def sharpe(m: np.ndarray) -> np.ndarray:
        k = (m @ count)[:, None]
        s, q = m @ total, m @ squares
        var = (q - s ** 2 / k) / (k - 1)
        sd = np.sqrt(np.clip(var, 0.0, None))
        return np.divide(s / k, sd, out=np.zeros_like(s), where=sd > 0)

    perf_is, perf_oos = sharpe(member), sharpe(1.0 - member)
    best = np.argmax(perf_is, axis=1)
    chosen = perf_oos[np.arange(len(best)), best][:, None]
    # relative rank of the in-sample winner out of sample, in (0, 1); ties share their average rank
    rank = ((perf_oos < chosen).sum(axis=1) + 0.5 * ((perf_oos == chosen).sum(axis=1) - 1) + 1) / (n + 1)
    logits = np.log(rank / (1 - rank))
    return {"pbo": float(np.mean(logits <= 0)), "splits": int(len(logits)), "logit_median": float(np.median(logits))}


def equity_returns(equities: np.ndarray, initial: float) -> np.ndarray:
    """Per-candle returns (fractions) of equity curves (combinations x candles) -> candles x combinations."""
    eq = np.atleast_2d(np.asarray(equities, dtype="float64"))
    prev = np.concatenate([np.full((eq.shape[0], 1), float(initial)), eq[:, :-1]], axis=1)
    r = np.divide(eq, prev, out=np.ones_like(eq), where=prev > 0) - 1.0
    return r.T


def sweep_overfitting(equities: np.ndarray, initial: float, chosen: int, extra_trials: int = 0,
                      blocks: int = 16) -> dict[str, float]:
    """PSR and DSR of combination ``chosen`` (every combination of the sweep, plus ``extra_trials``,
    counted as a trial) and the PBO of picking the best combination, from the sweep's equity curves."""
    r = equity_returns(equities, initial)
    out = deflated_sharpe_of_sweep(r, chosen, extra_trials) if r.shape[1] else {}
    pbo = pbo_cscv(r, blocks=blocks) if r.shape[1] > 1 else {"pbo": float("nan"), "splits": 0, "logit_median": float("nan")}
    return {**out, **pbo}
