"""Python-side API of the backtest: params -> parameter vectors, trades as a table, sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlrisk.backtest import engine as E
from mlrisk.config.backtest import BacktestParams
from mlrisk.times import EIGHT_HOURS_MS



def params_vector(bp: BacktestParams, interval_ms: int) -> np.ndarray:
    """The engine's parameter vector for ``bp`` (funding converted to a per-candle rate)."""
    v = np.zeros(E.N_PARAMS)
    v[E.P_INITIAL] = bp.initial_equity
    v[E.P_THRESHOLD] = bp.threshold
    v[E.P_LEVERAGE] = bp.leverage
    v[E.P_ORDER_SIZE] = bp.order_size
    v[E.P_PYRAMID_MAX] = bp.pyramid_max
    v[E.P_ENTRY_LIMIT] = 1.0 if bp.entry == "limit" else 0.0
    v[E.P_LIMIT_OFFSET] = bp.limit_offset
    v[E.P_LIMIT_TTL] = bp.limit_ttl
    v[E.P_HOLD] = bp.hold
    v[E.P_TAKE_PROFIT] = bp.take_profit or 0.0
    v[E.P_STOP_LOSS] = bp.stop_loss or 0.0
    v[E.P_EXIT_CLOSE] = 1.0 if bp.exit_check == "close" else 0.0
    v[E.P_FEE] = bp.fee_rate
    v[E.P_MAKER_FEE] = bp.maker_fee_rate
    v[E.P_SLIPPAGE] = bp.slippage_bps / 1e4
    v[E.P_FUNDING] = bp.funding_rate * interval_ms / EIGHT_HOURS_MS
    v[E.P_MMR] = bp.maintenance_margin_rate
    v[E.P_LIQ_FEE] = bp.liquidation_fee_rate
    v[E.P_MIN_NOTIONAL] = bp.min_notional
    v[E.P_DIRECTION] = {"both": 0, "long": 1, "short": -1}[bp.direction]
    v[E.P_LOT_STEP] = bp.lot_step
    return v


TRADE_COLUMNS = ["entry_time", "exit_time", "side", "entry_kind", "entry_price", "exit_price", "qty", "margin",
                 "notional", "entry_fee", "exit_fee", "funding", "pnl", "return_on_margin", "exit_reason",
                 "entry_candle", "exit_candle"]


def trades_frame(trades: np.ndarray, times: pd.Series) -> pd.DataFrame:
    """One row per closed entry, with UTC times, ``side`` long/short and the exit reason."""
    t = pd.DatetimeIndex(times)
    ei = trades[:, E.T_ENTRY_IDX].astype(int)
    xi = trades[:, E.T_EXIT_IDX].astype(int)
    df = pd.DataFrame({
        "entry_time": t[ei], "exit_time": t[xi],
        "side": np.where(trades[:, E.T_SIDE] > 0, "long", "short"),
        "entry_kind": np.array(E.ENTRY_KINDS)[trades[:, E.T_ENTRY_KIND].astype(int)],
        "entry_price": trades[:, E.T_ENTRY_PRICE], "exit_price": trades[:, E.T_EXIT_PRICE],
        "qty": trades[:, E.T_QTY], "margin": trades[:, E.T_MARGIN],
        "notional": trades[:, E.T_QTY] * trades[:, E.T_ENTRY_PRICE],
        "entry_fee": trades[:, E.T_ENTRY_FEE], "exit_fee": trades[:, E.T_EXIT_FEE], "funding": trades[:, E.T_FUNDING],
        "pnl": trades[:, E.T_PNL],
        "return_on_margin": trades[:, E.T_PNL] / np.where(trades[:, E.T_MARGIN] > 0, trades[:, E.T_MARGIN], np.nan),
        "exit_reason": np.array(E.EXIT_REASONS)[trades[:, E.T_REASON].astype(int)],
        "entry_candle": ei, "exit_candle": xi,
    })
    return df[TRADE_COLUMNS]


#: optional columns of a predictions table: the funding rate charged at each candle's open
#: (:func:`mlrisk.backtest.futures.funding_per_candle`) and the mark-price candle
FUNDING_COLUMN = "funding_rate"
MARK_COLUMNS = ("mark_open", "mark_high", "mark_low")


@dataclass
class BacktestResult:
    equity: np.ndarray          # quote currency, one value per close
    trades: pd.DataFrame        # one row per closed entry
    summary: np.ndarray         # engine summary vector (see engine.S_*)
    params: BacktestParams
    sources: dict[str, Any] | None = None  # which funding, liquidation and maintenance inputs were used (cost_sources)


def _arrays(pred: pd.DataFrame) -> list[np.ndarray]:
    return [pred[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close", "p_up")]


def _market(pred: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The table's mark-price rows (``MARK_COLUMNS``, all or none) and funding column, or None each."""
    have = [c for c in MARK_COLUMNS if c in pred.columns]
    if have and len(have) != len(MARK_COLUMNS):
        raise ValueError(f"mark prices: the table has {have} but needs all of {list(MARK_COLUMNS)}")
    mark = pred[list(MARK_COLUMNS)].to_numpy(dtype="float64") if have else None
    funding = pred[FUNDING_COLUMN].to_numpy(dtype="float64") if FUNDING_COLUMN in pred.columns else None
    return mark, funding


def cost_sources(n: int, mark: np.ndarray | None, funding: np.ndarray | None,
                 brackets: np.ndarray | None) -> dict[str, Any]:
    """What the engine used, for ``backtest.json``: ``funding`` "history" (per-candle rates) or "constant"
    (``funding_rate``); ``liquidation`` "mark", "last" or "mark+last" (mark candles where present, the
    last price on ``last_price_candles`` candles without); ``maintenance`` "brackets" or "constant"."""
    missing = n if mark is None else int(np.isnan(mark).any(axis=1).sum())
    liq = "last" if missing == n else "mark" if missing == 0 else "mark+last"
    return {"funding": "constant" if funding is None else "history", "liquidation": liq,
            "last_price_candles": missing, "maintenance": "constant" if brackets is None or not len(brackets) else "brackets"}


def run_backtest(pred: pd.DataFrame, bp: BacktestParams, interval_ms: int,
                 brackets: np.ndarray | None = None) -> BacktestResult:
    """Backtest ``bp`` on a predictions table (open_time, open, high, low, close, p_up; optionally
    ``funding_rate`` per candle and ``mark_open``, ``mark_high``, ``mark_low``); ``brackets``: maintenance
    tiers (:func:`mlrisk.backtest.futures.load_brackets`). Absent inputs fall back to the constant
    ``funding_rate``, the last price and ``maintenance_margin_rate`` (``sources`` says which)."""
    mark, funding = _market(pred)
    equity, trades = E.run(*_arrays(pred), params_vector(bp, interval_ms), mark, funding, brackets)
    summary = np.empty(E.N_SUMMARY)
    E.summarise(trades, len(trades), summary)
    return BacktestResult(equity, trades_frame(trades, pred["open_time"]), summary, bp,
                          cost_sources(len(pred), mark, funding, brackets))


@dataclass
class SweepResult:
    grid: list[dict[str, Any]]  # each combination's parameter overrides, in run order
    equities: np.ndarray        # combos x candles, quote currency
    table: pd.DataFrame         # one row per combination: its parameters and metrics, best total return first
    main: int | None            # the grid row equal to the main parameters, if the grid holds them

    @property
    def varied(self) -> list[str]:
        """The parameters that take more than one value in the grid."""
        return [k for k in self.grid[0] if len({g[k] for g in self.grid}) > 1] if self.grid else []

    def summary(self) -> dict[str, Any]:
        """Metrics of the sweep for the stage's JSON: its size and its best combination."""
        best = self.table.iloc[0]
        return {"combinations": len(self.grid), "best_total_return": float(best["total_return"]),
                "best_sharpe": float(self.table["sharpe"].max()),
                "best": {k: (v.item() if hasattr(v, "item") else v) for k, v in best[list(self.grid[0])].items()}}


def sweep_report(pred: pd.DataFrame, bp: BacktestParams, grid: list[dict[str, Any]], interval_ms: int,
                 brackets: np.ndarray | None = None) -> SweepResult:
    """Run the grid (:func:`run_sweep`) and score every combination like the main backtest."""
    from mlrisk.backtest.performance import sweep_table

    equities, summaries = run_sweep(pred, bp, grid, interval_ms, brackets)
    rows = sweep_table(equities, summaries, bp.initial_equity, interval_ms, pred["close"].to_numpy(dtype="float64"))
    table = pd.concat([pd.DataFrame(grid), pd.DataFrame(rows)], axis=1).sort_values("total_return", ascending=False, kind="stable")
    main = next((i for i, g in enumerate(grid) if all(getattr(bp, k) == v for k, v in g.items())), None)
    return SweepResult(grid, equities, table, main)


def run_sweep(pred: pd.DataFrame, bp: BacktestParams, grid: list[dict[str, Any]], interval_ms: int,
              brackets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every combination in ``grid`` (dicts of param overrides on ``bp``), in parallel, with the table's
    funding and mark columns and ``brackets`` as in :func:`run_backtest`.
    Returns (equity matrix combos x candles, summary matrix combos x N_SUMMARY)."""
    prms = np.stack([params_vector(bp.model_copy(update=combo), interval_ms) for combo in grid])
    return E.sweep(*_arrays(pred), prms, *_market(pred), brackets)


def combo_label(combo: dict[str, Any]) -> str:
    """A sweep combination as text, e.g. "threshold=0.08, leverage=3" ("main" for no overrides)."""
    return ", ".join(f"{k}={v}" for k, v in combo.items()) or "main"


def sweep_curves(sweep: SweepResult, times: pd.Series, max_points: int = 600) -> pd.DataFrame:
    """Every combination's equity at up to ``max_points`` evenly spaced shared times (first and last
    included): column ``time`` (UTC) and one column per combination, named by :func:`combo_label`
    with " (main)" appended to the main parameters' curve."""
    n = sweep.equities.shape[1]
    keep = np.arange(n) if n <= max_points else np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    names = [combo_label(g) + (" (main)" if i == sweep.main else "") for i, g in enumerate(sweep.grid)]
    curves = pd.DataFrame(sweep.equities[:, keep].T, columns=names)
    curves.insert(0, "time", pd.Series(times).iloc[keep].to_numpy())
    return curves
