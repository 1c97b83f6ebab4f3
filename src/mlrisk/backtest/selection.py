"""Honest strategy selection: choose the sweep's combination on one period, report it on another.

Picking the best of many combinations on the same candles it is then reported on overstates what
it will earn. Here the sweep is ranked on a *selection* period (the validation part's predictions,
or the earlier folds of a walk-forward run), and the chosen combination is then run on the
*report* period (the test part, or the later folds), where it had no say in its own choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlrisk.backtest.performance import performance
from mlrisk.backtest.runner import run_backtest, sweep_report
from mlrisk.config.backtest import BacktestParams


def select_and_report(select: pd.DataFrame, report: pd.DataFrame, bp: BacktestParams, grid: list[dict[str, Any]],
                      interval_ms: int, metric: str = "sharpe", brackets: np.ndarray | None = None) -> dict[str, Any]:
    """Rank ``grid`` on ``select`` by ``metric``, run the winner on ``report`` (both tables with their
    own funding and mark columns, if any; ``brackets`` as for :func:`run_backtest`). Returns the chosen
    combination, its selection and report metrics, and where the winner ranks among all
    combinations on the report period (1 = best; the in-sample choice would always be 1)."""
    ranked = sweep_report(select, bp, grid, interval_ms, brackets).table.sort_values(metric, ascending=False, kind="stable")
    keys = list(grid[0])
    chosen = {k: (v.item() if hasattr(v, "item") else v) for k, v in ranked.iloc[0][keys].items()}
    chosen_bp = bp.model_copy(update=chosen)
    res = run_backtest(report, chosen_bp, interval_ms, brackets)
    perf = performance(res.equity, bp.initial_equity, res.summary, interval_ms, report["close"].to_numpy(dtype="float64"))
    on_report = sweep_report(report, bp, grid, interval_ms, brackets).table
    rank = int((on_report[metric].to_numpy() > perf[metric] + 1e-12).sum()) + 1
    return {"chosen": chosen, "selected_by": metric, "selection_period": _span(select), "report_period": _span(report),
            "selection": {metric: float(ranked.iloc[0][metric]), "total_return": float(ranked.iloc[0]["total_return"])},
            "report": {k: perf[k] for k in ("total_return", "sharpe", "max_drawdown", "trades", "buy_hold_return")},
            "rank_on_report_period": rank, "combinations": len(grid)}


def _span(pred: pd.DataFrame) -> list[str]:
    t = pred["open_time"]
    return [t.iloc[0].isoformat(), t.iloc[-1].isoformat()] if len(t) else []
