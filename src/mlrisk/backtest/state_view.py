"""Reads and the few between-candle changes of the engine's carried state, so code outside
:mod:`mlrisk.backtest` never indexes an engine column or replaces an :class:`~mlrisk.backtest.engine.Account`
field (the live bot's :class:`mlrisk.live.sim_account.AccountState` is built on these).

``acct``: the :class:`~mlrisk.backtest.engine.Account` scalars; ``entries`` / ``orders``: the engine's
entry and resting-order rows (the first ``acct.n_entries`` / ``acct.n_orders`` in use). Prices and
margin in quote currency, quantities in base asset, candles by number.
"""

from __future__ import annotations

import numpy as np

from mlrisk.backtest import engine as E


def holding(acct: E.Account, entries: np.ndarray) -> tuple[float, float | None, float, int]:
    """The filled entries together: (quantity, quantity-weighted entry price or None when flat,
    margin in use, number of entries). The margin in use is the isolated wallet, the engine's: the
    entries' margin less the funding paid from it (plus the funding received)."""
    k = int(acct.n_entries)
    rows = entries[:k]
    qty = float(rows[:, E.E_QTY].sum()) if k else 0.0
    margin = float((rows[:, E.E_MARGIN] - rows[:, E.E_FUNDING]).sum()) if k else 0.0
    avg = float((rows[:, E.E_QTY] * rows[:, E.E_PRICE]).sum() / qty) if qty > 0 else None
    return qty, avg, margin, k


def resting_orders(acct: E.Account, orders: np.ndarray) -> list[tuple[float, int]]:
    """The resting limit entries, oldest first: (price, expiry candle number)."""
    return [(float(orders[j, E.O_PRICE]), int(orders[j, E.O_EXPIRE])) for j in range(int(acct.n_orders))]


def without_entries(acct: E.Account) -> E.Account:
    """``acct`` with no pending entry: no market entry for the next open, no resting limit."""
    return acct._replace(market_entry=0, n_orders=0, order_side=0)


def without_new_entries(acct: E.Account, newest_limit: bool) -> E.Account:
    """``acct`` without the market entry and (``newest_limit``) the newest resting limit; older limits stay."""
    n = acct.n_orders - 1 if newest_limit else acct.n_orders
    return acct._replace(market_entry=0, n_orders=n, order_side=acct.order_side if n > 0 else 0)


def with_exit(acct: E.Account, exit_: bool) -> E.Account:
    """``acct`` with the market exit at the next open set (``exit_``) or dropped."""
    return acct._replace(market_exit=exit_)


def with_newest_entry_scaled(acct: E.Account, entries: np.ndarray, fraction: float) -> tuple[E.Account, np.ndarray]:
    """``acct`` and ``entries`` with the newest filled entry cut to ``fraction`` (0 < fraction <= 1) of
    its quantity, margin and fee; the fee not paid goes back to the balance (quote currency)."""
    k = int(acct.n_entries)
    if k == 0 or not 0 < fraction <= 1:
        raise ValueError(f"cannot scale the newest entry by {fraction} ({k} entries)")
    out = entries.copy()
    refund = float(out[k - 1, E.E_FEE]) * (1 - fraction)
    for col in (E.E_QTY, E.E_MARGIN, E.E_FEE):
        out[k - 1, col] *= fraction
    return acct._replace(balance=acct.balance + refund), out
