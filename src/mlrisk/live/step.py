"""One candle's decision for the paper broker, pure: (state, candle, P(up), limits) -> (new state, what happened).

The broker is the backtest's own compiled per-candle step (:class:`mlrisk.live.sim_account.AccountState`,
i.e. :func:`mlrisk.backtest.engine.advance`): the same fills at the next open, fees, slippage,
funding, take-profit/stop and liquidation as the backtest, and the same order intents
(:func:`mlrisk.strategy.order_intents`). Nothing here re-implements a trading rule; the risk
controls only *remove* orders the step placed at this close (entries) or ask for the position to
be closed at the next open (the step's own exit), before anything could fill:

- a halt (daily loss or drawdown beyond the limit, equity marked to market at this close, so open
  P&L counts; in the exchange modes the real account's equity, ``mark``) removes every entry order, resting ones too; with ``flatten_on_breach`` the position
  is also closed at the next open. A daily-loss halt lifts at the next UTC day; a drawdown halt
  stays until the operator clears it (``--reset-halt``);
- ``max_position_notional`` (quote currency; 0 = none) removes a new entry when the position's
  notional at this close plus the entry's (sized by :func:`mlrisk.strategy.entry_size` on this
  close's free balance) would exceed it;
- ``max_orders_per_minute`` removes new entries beyond the limit (exits are never held back);
  "minute" is the clock the caller passes (wall clock live, candle close time in a replay).

Units: prices and equity in quote currency (USDT), times in epoch ms UTC, limits as in
:mod:`mlrisk.live.settings` (fractions for losses).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlrisk.backtest import engine as E
from mlrisk.errors import DataError
from mlrisk.live.risk import RiskLimits, update_risk
from mlrisk.live.sim_account import AccountState, CandleMarket
from mlrisk.live.state import RiskState
from mlrisk.strategy import entry_size, hold_exit_due, signal
from mlrisk.times import INTERVAL_MS

BLOB_VERSION = 1
MINUTE_MS = INTERVAL_MS["1m"]


@dataclass
class BotState:
    """What the bot carries from candle to candle (saved as the state store's step-state blob):
    the engine's account, the open time of candle number 0 (``origin_ms``), the equity at the last
    close, the times (ms) of the orders placed in the last minute and the last close price."""

    account: AccountState
    origin_ms: int
    interval_ms: int
    last_equity: float
    recent_orders_ms: list[int] = field(default_factory=list)
    last_close: float | None = None
    last_mark: float | None = None   # the real account's equity at the last close (exchange modes)
    #: the part (0..1) of the market entry sent at the last close that the exchange filled, when less than
    #: all: the engine's entry filled at the next open is cut to it (the real account is the truth)
    entry_fraction: float | None = None
    #: the funding time (ms, as Binance stamps it) of the last settlement the paper account charged
    #: (futures paper mode, :class:`mlrisk.live.feeds.market.VenueInputs`; None: none yet)
    funding_through_ms: int | None = None

    @classmethod
    def fresh(cls, prm: np.ndarray, origin_ms: int, interval_ms: int) -> "BotState":
        return cls(AccountState.fresh(prm), origin_ms, interval_ms, float(prm[E.P_INITIAL]))

    def next_open_ms(self) -> int:
        """Open time (ms UTC) of the next candle the account expects."""
        return self.origin_ms + self.account.next_candle * self.interval_ms

    def copy(self) -> "BotState":
        return BotState(self.account.copy(), self.origin_ms, self.interval_ms, self.last_equity,
                        list(self.recent_orders_ms), self.last_close, self.last_mark, self.entry_fraction,
                        self.funding_through_ms)

    def to_blob(self) -> bytes:
        return json.dumps({"version": BLOB_VERSION, "account": self.account.to_dict(), "origin_ms": self.origin_ms,
                           "interval_ms": self.interval_ms, "last_equity": self.last_equity,
                           "recent_orders_ms": self.recent_orders_ms, "last_close": self.last_close,
                           "last_mark": self.last_mark, "entry_fraction": self.entry_fraction,
                           "funding_through_ms": self.funding_through_ms}).encode()

    @classmethod
    def from_blob(cls, data: bytes) -> "BotState":
        try:
            d = json.loads(data)
            if d.get("version") != BLOB_VERSION:
                raise ValueError(f"version {d.get('version')} is not {BLOB_VERSION}")
            return cls(AccountState.from_dict(d["account"]), int(d["origin_ms"]), int(d["interval_ms"]),
                       float(d["last_equity"]), [int(t) for t in d["recent_orders_ms"]], d.get("last_close"),
                       d.get("last_mark"), d.get("entry_fraction"), d.get("funding_through_ms"))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"state file: the saved paper account is unreadable ({e}): use a new MLRISK_STATE_FILE") from None


@dataclass
class CandleResult:
    """What one candle did, for the log line: P(up), the signal, the orders placed at its close
    (after the risk controls), what the controls removed, position and equity at the close, and the
    entries the candle closed (engine trade rows)."""

    open_ms: int
    p_up: float
    decision: str
    orders: list[dict[str, Any]]
    blocked: list[str]
    position: dict[str, Any]
    equity: float
    trades: np.ndarray
    halted: bool
    halt_reason: str
    limits: list[str] = field(default_factory=list)  # the limits that removed or closed something at this close

    def record(self) -> dict[str, Any]:
        """JSON-safe fields (NaN P(up) as None)."""
        from mlrisk.times import from_ms

        return {"time": from_ms(self.open_ms).isoformat(), "open_ms": self.open_ms,
                "p_up": None if math.isnan(self.p_up) else self.p_up, "decision": self.decision,
                "orders": self.orders, "blocked": self.blocked, "position": self.position, "equity": self.equity,
                "trades": [_trade_dict(t) for t in self.trades], "halted": self.halted, "halt_reason": self.halt_reason}


def _trade_dict(t: np.ndarray) -> dict[str, Any]:
    return {"side": "long" if t[E.T_SIDE] > 0 else "short", "entry_candle": int(t[E.T_ENTRY_IDX]),
            "exit_candle": int(t[E.T_EXIT_IDX]), "entry_price": float(t[E.T_ENTRY_PRICE]),
            "exit_price": float(t[E.T_EXIT_PRICE]), "qty": float(t[E.T_QTY]), "pnl": float(t[E.T_PNL]),
            "reason": E.EXIT_REASONS[int(t[E.T_REASON])]}


def _position(acct: AccountState, close: float) -> tuple[dict[str, Any], float, float]:
    """(position dict, notional at ``close``, margin in use)."""
    h = acct.position()
    side = {1: "long", -1: "short", 0: "flat"}[acct.side]
    return {"side": side, "qty": h.qty, "entry_price": h.entry_price, "entries": h.entries}, h.qty * close, h.margin


def _orders(acct: AccountState, t: int, close: float, cfg: E.Config) -> tuple[list[dict[str, Any]], bool]:
    """The orders the step placed at the close of candle number ``t``: an exit at the next open (an
    opposite signal, or ``hold`` candles since the position's first entry), a market entry at the next
    open, a new resting limit entry. Returns (orders, new limit order?)."""
    out: list[dict[str, Any]] = []
    side = acct.side
    timed = side != 0 and hold_exit_due(t + 1, acct.first_candle, cfg.hold)  # the engine's hold exit at the next open
    if (acct.market_exit or timed) and side != 0:
        out.append({"leg": "exit", "side": "SELL" if side > 0 else "BUY", "type": "MARKET", "reduce_only": True})
    if acct.market_entry != 0:
        out.append({"leg": "entry", "side": "BUY" if acct.market_entry > 0 else "SELL", "type": "MARKET"})
    limits = acct.resting_limits(cfg.limit_ttl)
    new_limit = bool(limits) and limits[-1].placed_candle == t
    if new_limit:
        out.append({"leg": "entry", "side": "BUY" if acct.limit_side > 0 else "SELL", "type": "LIMIT",
                    "price": limits[-1].price})
    return out, new_limit


def paper_step(state: BotState, candle: tuple[float, float, float, float], open_ms: int, p_up: float,
               cfg: E.Config, limits: RiskLimits, risk: RiskState, now_ms: int,
               final: bool = False, mark: float | None = None, market: CandleMarket | None = None,
               brackets: np.ndarray | None = None) -> tuple[BotState, RiskState, CandleResult]:
    """Run one closed candle (open, high, low, close; open time ``open_ms``) with P(up) known at its
    close through the engine, then apply the risk controls to the orders it placed. ``now_ms``: the
    clock for the orders-per-minute window. ``final``: the data end here (replay), no orders.
    ``mark``: the real account's equity at this close (exchange modes; quote currency): the loss
    limits then measure it instead of the simulated account's. ``market``: the perpetual's funding and
    mark candle of this candle and ``brackets`` its maintenance tiers (futures; None: the spot path),
    exactly as the backtest gets them. Pure: ``state`` is not modified."""
    if open_ms != state.next_open_ms():
        raise DataError(f"candle {open_ms} is not the next one the account expects ({state.next_open_ms()}): "
                        "candles must arrive in order without gaps")
    new = state.copy()
    t = new.account.next_candle
    equity, trades = new.account.step(*candle, p_up, cfg, final, market, brackets)
    close_ms = open_ms + state.interval_ms
    if mark is None:
        risk = update_risk(risk, equity, state.last_equity, close_ms, limits)
    else:
        risk = update_risk(risk, mark, state.last_mark if state.last_mark is not None else mark, close_ms, limits)
        new.last_mark = mark
    orders, new_limit = _orders(new.account, t, candle[3], cfg)
    blocked: list[str] = []
    hit: list[str] = []
    entries = [o for o in orders if o["leg"] == "entry"]
    if risk.halted:
        a = new.account
        kind = risk.halt_reason.split(":")[0]
        if a.market_entry or a.has_limits:
            blocked.append(f"entries cancelled: trading halted ({kind})")
            a.cancel_entries()
            hit.append(f"max_{kind}")
        if limits.flatten_on_breach and a.side != 0 and not a.market_exit:
            a.request_exit()
            blocked.append("flatten: position closed at the next open (risk limit)")
            hit.append(f"max_{kind}")
    elif entries and limits.max_position_notional > 0:
        _, notional, margin = _position(new.account, candle[3])
        if any(o["leg"] == "exit" for o in orders):  # the position closes before the entry fills
            notional, margin = 0.0, 0.0
        _, add = entry_size(equity - margin, cfg.order_size, cfg.leverage, cfg.min_notional)
        if notional + add > limits.max_position_notional:
            blocked.append(f"entry cancelled: position notional {notional:.2f} + entry {add:.2f} would exceed "
                           f"max_position_notional {limits.max_position_notional:.2f}")
            new.account.cancel_new_entries(new_limit)
            hit.append("max_position_notional")
    orders, new_limit = _orders(new.account, t, candle[3], cfg)
    recent = [x for x in new.recent_orders_ms if x > now_ms - MINUTE_MS]
    if any(o["leg"] == "entry" for o in orders) and len(recent) + len(orders) > limits.max_orders_per_minute:
        blocked.append(f"entry cancelled: more than {limits.max_orders_per_minute} orders in a minute")
        new.account.cancel_new_entries(new_limit)
        hit.append("max_orders_per_minute")
        orders, _ = _orders(new.account, t, candle[3], cfg)
    new.recent_orders_ms = recent + [now_ms] * len(orders)
    new.last_equity = equity
    new.last_close = candle[3]
    pos, _, _ = _position(new.account, candle[3])
    s = signal(p_up, cfg.threshold)
    result = CandleResult(open_ms, p_up, {1: "long", -1: "short", 0: "none"}[s], orders, blocked, pos, equity, trades,
                          risk.halted, risk.halt_reason, sorted(set(hit)))
    return new, risk, result


def flatten(state: BotState, cfg: E.Config, brackets: np.ndarray | None = None) -> tuple[BotState, float, np.ndarray]:
    """Close the position at the last close (reason ``end``) and cancel pending entries,
    through the engine's own close-out (``brackets``: the maintenance tiers, as for :func:`paper_step`).
    Returns (new state, equity, trade rows)."""
    new = state.copy()
    if new.last_close is None:
        return new, new.last_equity, np.empty((0, E.N_TRADE_FIELDS))
    equity, trades = new.account.close_out(new.last_close, cfg, brackets)
    new.account.cancel_entries()
    new.account.clear_exit()
    new.last_equity = equity
    return new, equity, trades
