"""Where a backtest's P&L came from: price, fees and funding, per trade and in total, and the funding
paid candle by candle. Money in quote currency (USDT).

Sign conventions (those of :mod:`mlrisk.backtest.engine`, one row per closed entry in the trades
table of :func:`mlrisk.backtest.runner.trades_frame`): ``entry_fee`` and ``exit_fee`` are fees paid
(>= 0); ``funding`` is funding **paid** by the entry (positive: it paid, negative: it received, e.g.
a short while the rate is positive); ``pnl`` is the entry's net result,
``pnl = price - entry_fee - exit_fee - funding``, where ``price`` is ``side * qty * (exit - entry)``
(for a liquidation, minus the isolated wallet lost: the margin less the funding paid from it, since
funding is paid from the position's isolated margin). So ``price = pnl + fees + funding``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def trade_costs(trades: pd.DataFrame) -> pd.DataFrame:
    """Per trade: ``price_pnl`` (the P&L of the price move, quote), ``fees`` (entry + exit fee paid),
    ``funding`` (paid; negative = received) and ``pnl`` (net), with ``price_pnl - fees - funding == pnl``."""
    fees = trades["entry_fee"].to_numpy(dtype="float64") + trades["exit_fee"].to_numpy(dtype="float64")
    funding = trades["funding"].to_numpy(dtype="float64")
    pnl = trades["pnl"].to_numpy(dtype="float64")
    return pd.DataFrame({"price_pnl": pnl + fees + funding, "fees": fees, "funding": funding, "pnl": pnl},
                        index=trades.index)


def pnl_split(trades: pd.DataFrame) -> dict[str, float]:
    """Totals of :func:`trade_costs`: ``price`` + (-``fees``) + (-``funding``) = ``net`` (quote currency;
    ``fees`` and ``funding`` are amounts paid, funding negative when received)."""
    c = trade_costs(trades)
    return {"price": float(c["price_pnl"].sum()), "fees": float(c["fees"].sum()),
            "funding": float(c["funding"].sum()), "net": float(c["pnl"].sum())}


def funding_by_candle(trades: pd.DataFrame, rate: np.ndarray, mark_open: np.ndarray, open_: np.ndarray,
                      rtol: float = 1e-9) -> np.ndarray | None:
    """The funding the strategy paid at each candle's open (quote currency, one value per candle,
    positive: paid), rebuilt from the trades and the per-candle funding history the engine charged:
    an entry held into the open of candle t (entry candle < t <= exit candle) pays
    ``rate[t] * qty * mark_open[t] * side`` (the last-price open where the mark open is NaN), the
    engine's rule. Returns None when the rebuilt per-trade sums do not match the trades' ``funding``
    (relative ``rtol``): the caller then shows funding realised at exit instead."""
    n = len(rate)
    mo = np.where(np.isnan(mark_open), open_, mark_open)
    out = np.zeros(n)
    if len(trades) == 0:
        return out
    side = np.where(trades["side"].to_numpy() == "long", 1.0, -1.0)
    qty = trades["qty"].to_numpy(dtype="float64")
    ei = trades["entry_candle"].to_numpy(dtype="int64")
    xi = trades["exit_candle"].to_numpy(dtype="int64")
    # per candle, the signed quantity held into its open: +q from entry+1 to exit (inclusive)
    held = np.zeros(n + 1)
    np.add.at(held, ei + 1, side * qty)
    np.add.at(held, xi + 1, -side * qty)
    held = np.cumsum(held)[:n]
    out = rate * mo * held
    per_unit = np.concatenate([[0.0], np.cumsum(rate * mo)])  # sum of rate * mark open over candles 0..t-1
    rebuilt = side * qty * (per_unit[xi + 1] - per_unit[ei + 1])
    got = trades["funding"].to_numpy(dtype="float64")
    if not np.allclose(rebuilt, got, rtol=rtol, atol=1e-9 * max(1.0, float(np.abs(got).max()))):
        return None
    return out


def funding_sources_text(sources: dict[str, Any]) -> str:
    """One sentence naming the funding and liquidation inputs a backtest used (``backtest.json``'s
    ``sources``), e.g. for the dashboard."""
    f = {"history": "the funding history (each settlement at its time, on the notional at the mark price)",
         "constant": "the constant backtest.funding_rate (no funding history)"}.get(sources.get("funding"), "?")
    liq = {"mark": "the mark price", "last": "the last price (no mark-price candles)",
           "mark+last": f"the mark price, the last price on {sources.get('last_price_candles')} candle(s) without a mark candle"
           }.get(sources.get("liquidation"), "?")
    mm = ("Binance's maintenance margin by notional tier (leverage brackets)" if sources.get("maintenance") == "brackets"
          else "the flat backtest.maintenance_margin_rate")
    return f"Funding from {f}; liquidation on {liq}, with {mm}."
