"""Performance metrics of an equity curve and its trades. Returns and drawdowns are fractions;
Sharpe and Sortino are annualised from the candle interval (365-day crypto year), risk-free 0."""

from __future__ import annotations

import numpy as np

from mlrisk.backtest import engine as E
from mlrisk.times import YEAR_MS



def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall as a (negative) fraction, e.g. -0.25."""
    eq = np.asarray(equity, dtype="float64")
    if len(eq) == 0:
        return 0.0
    peak = np.maximum.accumulate(eq)
    dd = np.where(peak > 0, eq / peak - 1.0, 0.0)
    return float(dd.min())


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    eq = np.asarray(equity, dtype="float64")
    peak = np.maximum.accumulate(eq)
    return np.where(peak > 0, eq / peak - 1.0, 0.0)


def performance(equity: np.ndarray, initial: float, summary: np.ndarray, interval_ms: int, close: np.ndarray) -> dict[str, float]:
    """The backtest's headline metrics (DVC metrics of the main strategy)."""
    eq = np.asarray(equity, dtype="float64")
    n = len(eq)
    periods_per_year = YEAR_MS / interval_ms
    curve = np.r_[initial, eq]
    rets = np.diff(curve) / np.where(curve[:-1] > 0, curve[:-1], np.nan)
    rets = np.nan_to_num(rets)
    total = eq[-1] / initial - 1.0 if n else 0.0
    years = n / periods_per_year
    cagr = (eq[-1] / initial) ** (1.0 / years) - 1.0 if n and eq[-1] > 0 and years > 0 else -1.0
    sd = rets.std(ddof=1) if n > 1 else 0.0
    downside = np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)) if n else 0.0
    sharpe = rets.mean() / sd * np.sqrt(periods_per_year) if sd > 0 else 0.0
    sortino = rets.mean() / downside * np.sqrt(periods_per_year) if downside > 0 else 0.0
    mdd = max_drawdown(curve)
    trades = summary[E.S_TRADES]
    gp, gl = summary[E.S_GROSS_PROFIT], summary[E.S_GROSS_LOSS]
    bh = np.asarray(close, dtype="float64")
    return {
        "total_return": float(total),
        "cagr": float(cagr),
        "sharpe": float(sharpe),
        "sortino": float(sortino),
        "max_drawdown": float(mdd),
        "calmar": float(cagr / abs(mdd)) if mdd < 0 else 0.0,
        "win_rate": float(summary[E.S_WINS] / trades) if trades else 0.0,
        "profit_factor": float(gp / gl) if gl > 0 else (float("inf") if gp > 0 else 0.0),
        "expectancy": float((gp - gl) / trades) if trades else 0.0,
        "trades": int(trades),
        "exposure": float(summary[E.S_EXPOSURE] / n) if n else 0.0,
        "fees_paid": float(summary[E.S_FEES]),
        "funding_paid": float(summary[E.S_FUNDING]),
        "liquidations": int(summary[E.S_LIQUIDATIONS]),
        "final_equity": float(eq[-1]) if n else float(initial),
        "buy_hold_return": float(bh[-1] / bh[0] - 1.0) if n else 0.0,
        "buy_hold_max_drawdown": max_drawdown(bh) if n else 0.0,
    }


def sweep_table(equities: np.ndarray, summaries: np.ndarray, initial: float, interval_ms: int, close: np.ndarray) -> list[dict[str, float]]:
    return [performance(equities[i], initial, summaries[i], interval_ms, close) for i in range(len(equities))]
