"""One account stepped candle by candle (the live paper broker's view of the engine).

:class:`AccountState` holds what the engine carries between candles: the scalars
(:class:`mlrisk.backtest.engine.Account`), the filled entries and the resting limit orders (two small
float64 arrays, ``pyramid_max`` rows each), and the number of the next candle. :meth:`AccountState.step`
runs one candle through :func:`mlrisk.backtest.engine.advance`, the compiled code the backtest runs,
so a paper broker fed the backtest's candles reproduces its trades and equity exactly.
:meth:`AccountState.to_dict` / :meth:`AccountState.from_dict` save and restore it exactly (JSON-safe:
floats survive a JSON round trip bit for bit), so a bot can survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlrisk.backtest import engine as E
from mlrisk.errors import DataError


@dataclass
class AccountState:
    account: E.Account      # the scalars (balance in quote currency, position side, counts, pending orders)
    entries: np.ndarray     # pyramid_max x E.N_ENTRY_FIELDS, the first account.n_entries rows in use
    orders: np.ndarray      # pyramid_max x E.N_ORDER_FIELDS, the first account.n_orders rows in use
    next_candle: int = 0    # the number the next candle gets (entry candles, hold and limit expiry count in it)

    @classmethod
    def fresh(cls, prm: np.ndarray) -> AccountState:
        """A flat account with ``prm[P_INITIAL]`` (quote currency) and no orders, for parameter vector ``prm``."""
        prm = np.ascontiguousarray(prm, dtype=np.float64)
        acct, entries, orders = E.fresh_state(prm[E.P_INITIAL], int(prm[E.P_PYRAMID_MAX]))
        return cls(_typed(acct), entries, orders, 0)

    def copy(self) -> AccountState:
        """An independent copy (the arrays are copied)."""
        return AccountState(self.account, self.entries.copy(), self.orders.copy(), self.next_candle)

    def step(self, open_: float, high: float, low: float, close: float, p_up: float, cfg: E.Config,
             final: bool = False) -> tuple[float, np.ndarray]:
        """Run candle ``next_candle`` (prices in quote currency; ``p_up`` known at its close; ``cfg`` from
        :func:`mlrisk.backtest.engine.config`) and advance to the next. ``final``: the data end here (no
        orders placed at this close). Returns (equity at the close, trade rows of the entries it closed)."""
        equity, trades = self.run(np.array([open_]), np.array([high]), np.array([low]), np.array([close]),
                                  np.array([p_up]), cfg, final)
        return float(equity[0]), trades

    def run(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
            cfg: E.Config, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` through several candles at once: (equity per close, trade rows)."""
        if cfg.pyramid_max != self.entries.shape[0]:
            raise DataError(f"account state: holds {self.entries.shape[0]} entry rows but pyramid_max is "
                            f"{cfg.pyramid_max}: keep the parameters or start from a fresh state")
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, p_up)]
        n = len(arrays[0])
        equity = np.empty(n)
        trades = np.empty((2 * self.entries.shape[0] * n, E.N_TRADE_FIELDS))
        acct, ntr = E.advance(self.account, self.entries, self.orders, self.next_candle, *arrays, cfg, final,
                              trades, 0, equity)
        self.account = _typed(acct)
        self.next_candle += n
        return equity, trades[:ntr].copy()

    def close_out(self, close: float, cfg: E.Config) -> tuple[float, np.ndarray]:
        """Close the open position at ``close`` (reason ``end``) in the last candle run; resting orders stay.
        Returns (equity, trade rows)."""
        trades = np.empty((self.entries.shape[0], E.N_TRADE_FIELDS))
        acct, equity, ntr = E.close_out(self.account, self.entries, self.next_candle - 1, float(close), cfg,
                                        trades, 0)
        self.account = _typed(acct)
        return equity, trades[:ntr].copy()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe values: ``{"version", "account": {field: value}, "entries": [[...]],
        "orders": [[...]], "next_candle"}``."""
        return {"version": E.STATE_VERSION, "account": self.account._asdict(), "entries": self.entries.tolist(),
                "orders": self.orders.tolist(), "next_candle": self.next_candle}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccountState:
        """The state :meth:`to_dict` saved; :class:`DataError` naming the problem if it does not fit."""
        if not isinstance(d, dict) or d.get("version") != E.STATE_VERSION:
            raise DataError(f"account state: version {d.get('version') if isinstance(d, dict) else None!r} "
                            f"is not {E.STATE_VERSION}: start from a fresh state")
        try:
            acct = _typed(E.Account(**d["account"]))
            entries = np.array(d["entries"], dtype=np.float64).reshape(-1, E.N_ENTRY_FIELDS)
            orders = np.array(d["orders"], dtype=np.float64).reshape(-1, E.N_ORDER_FIELDS)
            next_candle = int(d["next_candle"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"account state: malformed ({e}): start from a fresh state") from None
        if entries.shape[0] != orders.shape[0] or not (0 <= acct.n_entries <= entries.shape[0]
                                                       and 0 <= acct.n_orders <= orders.shape[0]):
            raise DataError(f"account state: {acct.n_entries} entries / {acct.n_orders} orders do not fit "
                            f"{entries.shape[0]} / {orders.shape[0]} rows: start from a fresh state")
        return cls(acct, np.ascontiguousarray(entries), np.ascontiguousarray(orders), next_candle)


def _typed(acct: tuple) -> E.Account:
    """The scalars with the types the compiled code expects (float balance, integer counts, bool)."""
    return E.Account(float(acct[0]), *(int(v) for v in acct[1:8]), bool(acct[8]))
