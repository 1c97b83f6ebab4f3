"""One account stepped candle by candle (the live paper broker's view of the engine).

:class:`AccountState` holds what the engine carries between candles: the scalars
(:class:`mlrisk.backtest.engine.Account`), the filled entries and the resting limit orders (two small
float64 arrays, ``pyramid_max`` rows each), and the number of the next candle. :meth:`AccountState.step`
runs one candle through :func:`mlrisk.backtest.engine.advance_market` (on futures with that candle's
funding and mark candle, :class:`CandleMarket`, and the brackets), the compiled code the backtest runs,
so a paper broker fed the backtest's candles reproduces its trades and equity exactly.
:meth:`AccountState.to_dict` / :meth:`AccountState.from_dict` save and restore it exactly (JSON-safe:
floats survive a JSON round trip bit for bit), so a bot can survive restarts.

It is the live code's only view of the engine's state: the read accessors (:attr:`AccountState.side`,
:meth:`AccountState.position`, :meth:`AccountState.resting_limits`, ...) and the few changes the
risk controls make between candles (:meth:`AccountState.cancel_entries`,
:meth:`AccountState.cancel_new_entries`, :meth:`AccountState.request_exit`,
:meth:`AccountState.clear_exit`), so no engine column or field is indexed outside
:mod:`mlrisk.backtest` (:mod:`mlrisk.backtest.state_view` does it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mlrisk.backtest import engine as E
from mlrisk.backtest import state_view as V
from mlrisk.errors import DataError


class Holding(NamedTuple):
    """The filled entries together: ``qty`` (base asset, > 0 when held), ``entry_price`` (the
    quantity-weighted average, quote currency; None when flat), ``margin`` (quote currency in use: the
    isolated wallet, the entries' margin less the funding paid from it),
    ``entries`` (how many)."""

    qty: float
    entry_price: float | None
    margin: float
    entries: int


class CandleMarket(NamedTuple):
    """The perpetual's inputs of one candle, as :func:`mlrisk.backtest.futures.market_columns` gives them
    for the backtest: ``funding_rate`` (fraction) charged at its open, 0.0 where no settlement falls
    there, None when the run has no funding history (the constant ``funding_rate`` then applies, as in a
    backtest without a ``funding_rate`` column); ``mark`` (open, high, low of its mark candle, quote
    currency; NaN: none for this candle, the last price stands in) or None when the run has no mark data."""

    funding_rate: float | None
    mark: tuple[float, float, float] | None


class RestingLimit(NamedTuple):
    """A resting limit entry: ``price`` (quote currency), the number of the candle at whose close it
    was placed (``placed_candle``) and the number of its last candle (``expire_candle``)."""

    price: float
    placed_candle: int
    expire_candle: int


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
             final: bool = False, market: CandleMarket | None = None,
             brackets: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Run candle ``next_candle`` (prices in quote currency; ``p_up`` known at its close; ``cfg`` from
        :func:`mlrisk.backtest.engine.config`) and advance to the next. ``final``: the data end here (no
        orders placed at this close). ``market``: the perpetual's inputs of this candle (see
        :class:`CandleMarket`; None: none, the spot path), ``brackets``: the maintenance tiers
        (:func:`mlrisk.backtest.futures.market_params`). Returns (equity at the close, trade rows of the
        entries it closed)."""
        mark = funding = None
        if market is not None:
            funding = None if market.funding_rate is None else np.array([market.funding_rate])
            mark = None if market.mark is None else np.array([market.mark], dtype=np.float64)
        equity, trades = self.run(np.array([open_]), np.array([high]), np.array([low]), np.array([close]),
                                  np.array([p_up]), cfg, final, mark, funding, brackets)
        return float(equity[0]), trades

    def run(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
            cfg: E.Config, final: bool = False, mark: np.ndarray | None = None, funding: np.ndarray | None = None,
            brackets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` through several candles at once: (equity per close, trade rows). ``mark``,
        ``funding``, ``brackets`` as for :func:`mlrisk.backtest.engine.run` (through
        :func:`mlrisk.backtest.engine.market_arrays`: all None is the spot path, else
        :func:`mlrisk.backtest.engine.advance_market` with each missing input's fallback)."""
        if cfg.pyramid_max != self.entries.shape[0]:
            raise DataError(f"account state: holds {self.entries.shape[0]} entry rows but pyramid_max is "
                            f"{cfg.pyramid_max}: keep the parameters or start from a fresh state")
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, p_up)]
        n = len(arrays[0])
        equity = np.empty(n)
        trades = np.empty((2 * self.entries.shape[0] * n, E.N_TRADE_FIELDS))
        acct, ntr = E.advance_market(self.account, self.entries, self.orders, self.next_candle, *arrays,
                                     *E.market_arrays(n, mark, funding, brackets),
                                     E.LOTS_ON if cfg.lot_step > 0 else None, cfg, final, trades, 0, equity)
        self.account = _typed(acct)
        self.next_candle += n
        return equity, trades[:ntr].copy()

    def close_out(self, close: float, cfg: E.Config, brackets: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Close the open position at ``close`` (reason ``end``) in the last candle run; resting orders stay
        (``brackets``: as for :meth:`run`, a fill beyond the liquidation price is a liquidation).
        Returns (equity, trade rows)."""
        trades = np.empty((self.entries.shape[0], E.N_TRADE_FIELDS))
        br = None if brackets is None else E.market_arrays(1, None, None, brackets)[2]
        acct, equity, ntr = E.close_out_market(self.account, self.entries, self.next_candle - 1, float(close), cfg,
                                               br, trades, 0)
        self.account = _typed(acct)
        return equity, trades[:ntr].copy()

    # ------------------------------------------------------------------------------ reads
    @property
    def side(self) -> int:
        """The position's side: 1 long, -1 short, 0 flat."""
        return int(self.account.side)

    @property
    def market_entry(self) -> int:
        """The side of a market entry placed for the next open (0: none)."""
        return int(self.account.market_entry)

    @property
    def market_exit(self) -> bool:
        """True when the position is to be closed at the next open."""
        return bool(self.account.market_exit)

    @property
    def first_candle(self) -> int:
        """The number of the candle of the position's first entry."""
        return int(self.account.first_candle)

    @property
    def limit_side(self) -> int:
        """The side of the resting limit entries (0: none rest)."""
        return int(self.account.order_side) if self.account.n_orders else 0

    @property
    def has_limits(self) -> bool:
        """True when resting limit entries wait for a fill."""
        return self.account.n_orders > 0

    def position(self) -> Holding:
        """The filled entries together (see :class:`Holding`)."""
        return Holding(*V.holding(self.account, self.entries))

    def resting_limits(self, limit_ttl: int) -> list[RestingLimit]:
        """The resting limit entries, oldest first; ``limit_ttl``: the candles a limit order rests
        (the engine keeps each with its expiry candle ``placed + limit_ttl``)."""
        return [RestingLimit(price, expire - limit_ttl, expire) for price, expire in V.resting_orders(self.account, self.orders)]

    # ---------------------------------------------------------------- the risk controls' changes
    def cancel_entries(self) -> None:
        """Remove every entry not yet filled: the market entry for the next open and all resting limits."""
        self.account = V.without_entries(self.account)

    def cancel_new_entries(self, newest_limit: bool) -> None:
        """Remove the entries placed at the last close: the market entry and (``newest_limit``) the
        newest resting limit; older resting limits stay."""
        self.account = V.without_new_entries(self.account, newest_limit)

    def scale_newest_entry(self, fraction: float) -> None:
        """Cut the newest filled entry to ``fraction`` (0 < fraction <= 1) of its quantity, margin and fee
        (the fee not paid back to the balance): the real order filled only that part (e.g. a spot
        MARKET order partly filled, then EXPIRED)."""
        self.account, self.entries = V.with_newest_entry_scaled(self.account, self.entries, fraction)

    def request_exit(self) -> None:
        """Close the position at the next open (the engine's own market exit)."""
        self.account = V.with_exit(self.account, True)

    def clear_exit(self) -> None:
        """Drop a market exit planned for the next open."""
        self.account = V.with_exit(self.account, False)

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
