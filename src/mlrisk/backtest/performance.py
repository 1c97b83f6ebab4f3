"""Performance metrics of an equity curve and its trades. Returns and drawdowns are fractions;
Sharpe and Sortino are annualised from the candle interval (365-day crypto year), risk-free 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

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
    rets = returns_per_candle(eq, initial)
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


def returns_per_candle(equity: np.ndarray, initial: float) -> np.ndarray:
    """Fractional return of each candle, the first one against ``initial`` (0 where equity was 0)."""
    curve = np.r_[float(initial), np.asarray(equity, dtype="float64")]
    return np.nan_to_num(np.diff(curve) / np.where(curve[:-1] > 0, curve[:-1], np.nan))


def rolling_sharpe(equity: np.ndarray, initial: float, window: int, interval_ms: int) -> np.ndarray:
    """Sharpe ratio over the last ``window`` candles at each candle, annualised like :func:`performance`
    (NaN until ``window`` candles have passed or where returns do not vary)."""
    r = pd.Series(returns_per_candle(equity, initial))
    roll = r.rolling(window, min_periods=window)
    sd = roll.std(ddof=1)
    out = roll.mean() / sd.where(sd > 1e-12) * np.sqrt(YEAR_MS / interval_ms)
    return out.to_numpy()


def monthly_returns(times: pd.Series | pd.DatetimeIndex, equity: np.ndarray, initial: float) -> pd.DataFrame:
    """Return of each calendar month (UTC) as a fraction: the month's last equity over the previous
    month's last equity (the first month over ``initial``). Rows: years; columns: months 1..12 (NaN
    where the data has no candle)."""
    s = pd.Series(np.asarray(equity, dtype="float64"), index=pd.DatetimeIndex(times))
    last = s.groupby([s.index.year, s.index.month]).last()
    prev = last.shift(1)
    if len(prev):
        prev.iloc[0] = float(initial)
    ret = (last / prev.where(prev > 0) - 1.0).rename("ret")
    ret.index = ret.index.set_names(["year", "month"])
    table = ret.unstack("month").reindex(columns=range(1, 13))
    return table


def drawdown_duration(times: pd.Series | pd.DatetimeIndex, equity: np.ndarray) -> pd.Timedelta:
    """Longest time spent below a previous equity peak (from the peak to the candle that makes a new
    high, or to the last candle if none does)."""
    t = pd.DatetimeIndex(times)
    eq = np.asarray(equity, dtype="float64")
    if len(eq) < 2:
        return pd.Timedelta(0)
    peak = np.maximum.accumulate(eq)
    at_peak = eq >= peak
    peak_pos = np.maximum.accumulate(np.where(at_peak, np.arange(len(eq)), 0))  # last peak at or before i
    under = ~at_peak
    if not under.any():
        return pd.Timedelta(0)
    span = t - t[peak_pos]  # time since the last peak
    return pd.Timedelta(span[under].max())


def trade_stats(trades: pd.DataFrame) -> dict[str, Any]:
    """Best, worst and average trade (return on margin, fraction), average trade duration."""
    if len(trades) == 0:
        return {"best_trade": float("nan"), "worst_trade": float("nan"), "avg_trade": float("nan"),
                "avg_trade_duration": pd.Timedelta(0)}
    r = trades["return_on_margin"].astype("float64")
    dur = pd.to_datetime(trades["exit_time"], utc=True) - pd.to_datetime(trades["entry_time"], utc=True)
    return {"best_trade": float(r.max()), "worst_trade": float(r.min()), "avg_trade": float(r.mean()),
            "avg_trade_duration": dur.mean()}


def portfolio_stats(times: pd.Series | pd.DatetimeIndex, equity: np.ndarray, trades: pd.DataFrame,
                    metrics: dict[str, Any]) -> dict[str, Any]:
    """The main strategy's statistics in the spirit of vectorbt's ``Portfolio.stats()``: ``metrics``
    (from :func:`performance`) completed with the period, drawdown duration and per-trade figures.
    Returns, drawdowns and trade returns are fractions; durations are ``pd.Timedelta``; money in quote
    currency."""
    t = pd.DatetimeIndex(times)
    ts = trade_stats(trades)
    return {
        "start": t[0] if len(t) else None, "end": t[-1] if len(t) else None,
        "period": (t[-1] - t[0]) if len(t) else pd.Timedelta(0),
        "total_return": metrics["total_return"], "buy_hold_return": metrics["buy_hold_return"],
        "cagr": metrics["cagr"],
        "max_drawdown": metrics["max_drawdown"], "max_drawdown_duration": drawdown_duration(t, equity),
        "trades": metrics["trades"], "win_rate": metrics["win_rate"],
        "best_trade": ts["best_trade"], "worst_trade": ts["worst_trade"], "avg_trade": ts["avg_trade"],
        "avg_trade_duration": ts["avg_trade_duration"],
        "profit_factor": metrics["profit_factor"], "expectancy": metrics["expectancy"],
        "sharpe": metrics["sharpe"], "sortino": metrics["sortino"], "calmar": metrics["calmar"],
        "exposure": metrics["exposure"], "fees_paid": metrics["fees_paid"], "funding_paid": metrics["funding_paid"],
        "liquidations": metrics["liquidations"], "final_equity": metrics["final_equity"],
    }
