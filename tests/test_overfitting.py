"""Deflated Sharpe ratio and PBO against the papers' worked example and constructed cases."""

import math

import numpy as np
import pytest

from mlrisk.backtest.overfitting import (deflated_sharpe_of_sweep, deflated_sharpe_ratio, expected_max_sharpe,
                                         pbo_cscv, probabilistic_sharpe_ratio, sharpe_stats)


def test_deflated_sharpe_matches_the_papers_numerical_example():
    """Bailey & López de Prado (2014), 'The Deflated Sharpe Ratio', numerical example: 100 trials whose
    annualised Sharpe ratios have variance 1/2, the best at 2.5 annualised, 5 years of daily returns
    (1,250), skewness -3, kurtosis 10 (raw): SR0 = 0.1132 per day and DSR = 0.9004."""
    days = 250
    sr = 2.5 / math.sqrt(days)
    sr0 = expected_max_sharpe(0.5 / days, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, 0.5 / days, 100) == pytest.approx(0.9004, abs=5e-4)
    # with excess kurtosis (7) in place of raw kurtosis (10) the answer is wrong: the error vectorbt makes
    assert abs(deflated_sharpe_ratio(sr, 1250, -3.0, 7.0, 0.5 / days, 100) - 0.9004) > 1e-3


def test_psr_is_one_half_at_the_benchmark_and_grows_with_length():
    assert probabilistic_sharpe_ratio(0.1, 500, 0.0, 3.0, sr_benchmark=0.1) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(0.1, 1000) > probabilistic_sharpe_ratio(0.1, 100) > 0.5
    assert expected_max_sharpe(0.01, 1) == 0.0


def test_sharpe_stats_on_normal_returns():
    r = np.random.default_rng(0).normal(0.001, 0.01, 200_000)
    st = sharpe_stats(r)
    assert st["sr"] == pytest.approx(0.1, abs=0.01) and st["skew"] == pytest.approx(0, abs=0.05)
    assert st["kurt"] == pytest.approx(3.0, abs=0.1)


def test_pbo_of_a_sweep_over_pure_noise_is_near_or_above_one_half():
    rng = np.random.default_rng(7)
    pbos = [pbo_cscv(rng.normal(0, 0.01, (1600, 30)), blocks=10)["pbo"] for _ in range(5)]
    assert np.mean(pbos) >= 0.4, pbos


def test_pbo_is_zero_when_one_combination_is_truly_better_everywhere():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 0.01, (1600, 20))
    r[:, 3] += 0.01  # a large, persistent edge
    out = pbo_cscv(r, blocks=10)
    assert out["pbo"] == 0.0 and out["splits"] == 252 and out["logit_median"] > 0


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    """Two strategies that alternate: whichever wins the in-sample blocks loses the others."""
    t = 1600
    blocks = np.repeat(np.arange(8), t // 8)
    a = np.where(blocks % 2 == 0, 0.01, -0.01) + np.random.default_rng(2).normal(0, 1e-4, t)
    r = np.c_[a, -a]
    out = pbo_cscv(r, blocks=8)
    assert out["pbo"] >= 0.5  # symmetric splits are ties; never does the winner keep winning
    assert out["logit_median"] <= 0


def test_dsr_of_a_sweep_counts_every_combination_as_a_trial():
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.01, (2000, 50))
    best = int(np.argmax([x.mean() / x.std(ddof=1) for x in r.T]))
    d = deflated_sharpe_of_sweep(r, best)
    assert d["trials"] == 50 and d["dsr"] < d["psr"]
    assert d["dsr"] < 0.95  # the best of 50 noise strategies is not significant after deflation
    assert deflated_sharpe_of_sweep(r, best, extra_trials=100)["dsr"] < d["dsr"]


def test_sweep_overfitting_from_equity_curves():
    from mlrisk.backtest.overfitting import equity_returns, sweep_overfitting

    eq = np.array([[110.0, 121.0], [90.0, 90.0]])
    np.testing.assert_allclose(equity_returns(eq, 100.0), [[0.1, -0.1], [0.1, 0.0]])
    rng = np.random.default_rng(5)
    curves = 1000 * np.cumprod(1 + rng.normal(0, 0.01, (20, 3200)), axis=1)
    out = sweep_overfitting(curves, 1000.0, chosen=int(np.argmax(curves[:, -1])), blocks=10)
    assert out["trials"] == 20 and out["dsr"] < out["psr"] and 0.0 <= out["pbo"] <= 1.0 and out["splits"] == 252


def test_honest_selection_chooses_on_one_period_and_reports_on_the_other():
    import pandas as pd

    from mlrisk.backtest.selection import select_and_report
    from mlrisk.evaluation.folds import split_periods
    from mlrisk.config.backtest import BacktestParams

    rng = np.random.default_rng(0)
    n = 1200
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    pred = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), "open": c, "high": c * 1.005,
                         "low": c * 0.995, "close": c, "p_up": rng.uniform(0.3, 0.7, n), "fold": np.repeat([1, 2, 3, 4], n // 4)})
    sel, rep = split_periods(pred)
    assert sel["fold"].max() == 2 and rep["fold"].min() == 3
    bp = BacktestParams(initial_equity=1000.0)
    grid = [{"threshold": t} for t in (0.02, 0.05, 0.1, 0.15)]
    out = select_and_report(sel, rep, bp, grid, 3_600_000)
    assert out["chosen"]["threshold"] in (0.02, 0.05, 0.1, 0.15) and 1 <= out["rank_on_report_period"] <= 4
    assert out["selection_period"][1] < out["report_period"][0]
