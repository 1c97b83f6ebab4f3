"""A fast, exact, leveraged long/short backtest engine (numba): arrays in, arrays out.

Every assumption, in the order the engine applies them. Units: prices in quote currency,
rates and offsets as fractions, ``slippage_bps`` in basis points, times in candles.

**Signal.** At the close of candle t the probability of up ``p`` gives long if
``p >= 0.5 + threshold``, short if ``p <= 0.5 - threshold``, else none (NaN = none); see
:func:`mlrisk.backtest.strategy.decide`, which the live bot calls too. A long signal closes an open
short (at the next open) and cancels resting short orders, then adds one long entry if the long
side holds fewer than ``pyramid_max`` entries, filled plus pending. Shorts mirror this. With
``direction: long`` (or ``short``) a signal for the other side only closes and cancels.

**Entries.** ``entry: market`` fills at the open of candle t+1, moved against the trader by
``slippage_bps``. ``entry: limit`` rests at ``close * (1 - limit_offset)`` for a long
(``1 + limit_offset`` for a short) and fills at exactly that price on the first later candle whose
low (high) trades strictly through it; it is cancelled after ``limit_ttl`` candles (it may fill on
candles t+1 .. t+limit_ttl). A limit order never fills on the candle that placed it.

**Size.** Each entry's margin is ``order_size * free balance`` at its fill, where free balance is
equity (marked at the fill price) minus the margin in use; its notional is
``margin * leverage`` (isolated margin). If the notional is below ``min_notional`` the entry is
skipped. A side's entries form one position at their quantity-weighted average price.

**Exits** close the whole position: after ``hold`` candles since its first entry (at the open of
candle first + hold; 0 = never), on an opposite signal (at the next open), at ``take_profit`` /
``stop_loss`` (fractions of the average entry price), at liquidation, or at the end of the data
(at the last close, reason ``end``). ``exit_check: intrabar`` fills take-profit and stop at their
level when the candle's high/low touches it, or at the open if the candle opens beyond the level;
the stop wins when both are touched in one candle. ``exit_check: close`` checks and fills them at
the close (the original tool's rule, the one documented exception to next-open fills).
Liquidation is always intrabar: the isolated-margin liquidation price is
``(Q*P - M) / (Q*(1 - mmr))`` for a long and ``(Q*P + M) / (Q*(1 + mmr))`` for a short (Q quantity,
P average price, M margin, mmr ``maintenance_margin_rate``); when the candle's adverse extreme
reaches it the position closes there and its whole margin is lost, plus ``liquidation_fee_rate``
on the notional at that price. Between a stop and the liquidation price, the level nearer the
entry is reached first; an open beyond the liquidation price liquidates, and so does any exit
whose fill price would be at or beyond it (the exchange would have got there first).

**Costs.** ``fee_rate`` (taker) on market entries and on every exit, ``maker_fee_rate`` on limit
fills, each on the fill's notional. Every exit except liquidation also pays slippage.
``funding_rate`` is per 8 hours on the open notional at each close, pro rata to the candle
length, paid by longs (received by shorts) when positive.

**Order of events in candle t.** (1) At the open: a position whose liquidation price the open gapped
through is liquidated; then orders decided at the close of t-1 fill, exits first (opposite
signal, ``hold``), then market entries. (2) Resting limit orders fill (oldest
first). (3) Intrabar exits: liquidation, stop, take-profit. A position whose latest entry was
filled by a limit order inside candle t is first checked on candle t+1. (4) At the close:
close-checked exits, funding, mark to market; then the new signal is read and orders placed.

**Equity** is marked to market at every close and can never go below zero: a liquidation never
takes more than the account holds. An account whose free balance cannot fund ``min_notional``
stops opening entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from mlrisk.errors import DataError
from mlrisk.strategy import ENTRY_LIMIT, entry_size, exit_at_close, liquidation_price, order_intents, protective_levels

# parameter vector layout
(P_INITIAL, P_THRESHOLD, P_LEVERAGE, P_ORDER_SIZE, P_PYRAMID_MAX, P_ENTRY_LIMIT, P_LIMIT_OFFSET, P_LIMIT_TTL,
 P_HOLD, P_TAKE_PROFIT, P_STOP_LOSS, P_EXIT_CLOSE, P_FEE, P_MAKER_FEE, P_SLIPPAGE, P_FUNDING, P_MMR,
 P_LIQ_FEE, P_MIN_NOTIONAL, P_DIRECTION) = range(20)
N_PARAMS = 20

# trade record layout (one row per closed entry)
(T_ENTRY_IDX, T_EXIT_IDX, T_SIDE, T_ENTRY_PRICE, T_EXIT_PRICE, T_QTY, T_MARGIN, T_ENTRY_FEE, T_EXIT_FEE,
 T_FUNDING, T_PNL, T_REASON, T_ENTRY_KIND) = range(13)
N_TRADE_FIELDS = 13

EXIT_REASONS = ("signal", "hold", "take_profit", "stop_loss", "liquidation", "end")
R_SIGNAL, R_HOLD, R_TAKE_PROFIT, R_STOP_LOSS, R_LIQUIDATION, R_END = range(6)
ENTRY_KINDS = ("market", "limit")

# summary layout (sweeps)
(S_TRADES, S_WINS, S_GROSS_PROFIT, S_GROSS_LOSS, S_FEES, S_FUNDING, S_LIQUIDATIONS, S_EXPOSURE) = range(8)
N_SUMMARY = 8

# account state: a vector of scalars (integers stored exactly as float64) ...
(A_BALANCE, A_SIDE, A_ENTRIES, A_FIRST_CANDLE, A_LAST_LIMIT_FILL, A_ORDER_SIDE, A_ORDERS, A_MARKET_ENTRY,
 A_MARKET_EXIT) = range(9)
N_ACCOUNT = 9
# ... the position's filled entries, one row each (pyramid_max rows, the first A_ENTRIES in use) ...
(E_QTY, E_PRICE, E_MARGIN, E_FEE, E_FUNDING, E_CANDLE, E_KIND) = range(7)
N_ENTRY_FIELDS = 7
# ... and the resting limit orders, oldest first (pyramid_max rows, the first A_ORDERS in use)
(O_PRICE, O_EXPIRE) = range(2)
N_ORDER_FIELDS = 2
STATE_VERSION = 1


@njit(cache=True, inline="always")
def _drop_order(j: int, nl: int, orders: np.ndarray) -> int:
    """Remove resting order ``j`` of ``nl`` (later orders move up, keeping their order); returns ``nl - 1``."""
    for jj in range(j, nl - 1):
        orders[jj, O_PRICE] = orders[jj + 1, O_PRICE]
        orders[jj, O_EXPIRE] = orders[jj + 1, O_EXPIRE]
    return nl - 1


@njit(cache=True, inline="always")
def _position(side: int, k: int, entries: np.ndarray, mmr: float) -> tuple[float, float]:
    """The open position's average entry price and isolated-margin liquidation price."""
    q_tot = 0.0
    m_tot = 0.0
    cost = 0.0
    for i in range(k):
        q_tot += entries[i, E_QTY]
        m_tot += entries[i, E_MARGIN]
        cost += entries[i, E_QTY] * entries[i, E_PRICE]
    avg = cost / q_tot
    return avg, liquidation_price(side, q_tot, avg, m_tot, mmr)


@njit(cache=True)
def _close_position(t: int, px: float, reason: int, fee_rate: float, side: int, k: int, entries: np.ndarray,
                    balance: float, liq_fee_rate: float, mmr: float, trades: np.ndarray, ntr: int) -> tuple[float, int]:
    """Close all ``k`` entries at ``px``; returns (new balance, new trade count). An exit whose
    price is at or beyond the liquidation price is a liquidation (the exchange would get there first)."""
    if reason != R_LIQUIDATION:
        _, liq = _position(side, k, entries, mmr)
        if (side == 1 and px <= liq) or (side == -1 and px >= liq):
            reason = R_LIQUIDATION
            px = liq
    if reason == R_LIQUIDATION:
        m_total = 0.0
        fee_total = 0.0
        for i in range(k):
            m_total += entries[i, E_MARGIN]
            fee_total += liq_fee_rate * entries[i, E_QTY] * px
        loss = m_total + fee_total
        scale = 1.0
        if loss > balance:  # never take more than the account holds
            scale = max(balance, 0.0) / loss if loss > 0 else 0.0
        for i in range(k):
            exit_fee = liq_fee_rate * entries[i, E_QTY] * px * scale
            pnl = -entries[i, E_MARGIN] * scale - exit_fee - entries[i, E_FEE] - entries[i, E_FUNDING]
            _record(trades, ntr, t, side, entries[i], px, exit_fee, pnl, reason)
            ntr += 1
        return balance - loss * scale, ntr
    for i in range(k):
        exit_fee = fee_rate * entries[i, E_QTY] * px
        gross = side * entries[i, E_QTY] * (px - entries[i, E_PRICE])
        pnl = gross - entries[i, E_FEE] - exit_fee - entries[i, E_FUNDING]
        balance += gross - exit_fee
        _record(trades, ntr, t, side, entries[i], px, exit_fee, pnl, reason)
        ntr += 1
    return balance, ntr


@njit(cache=True)
def _record(trades: np.ndarray, r: int, exit_idx: int, side: int, entry: np.ndarray, exit_price: float,
            exit_fee: float, pnl: float, reason: int) -> None:
    trades[r, T_ENTRY_IDX] = entry[E_CANDLE]
    trades[r, T_EXIT_IDX] = exit_idx
    trades[r, T_SIDE] = side
    trades[r, T_ENTRY_PRICE] = entry[E_PRICE]
    trades[r, T_EXIT_PRICE] = exit_price
    trades[r, T_QTY] = entry[E_QTY]
    trades[r, T_MARGIN] = entry[E_MARGIN]
    trades[r, T_ENTRY_FEE] = entry[E_FEE]
    trades[r, T_EXIT_FEE] = exit_fee
    trades[r, T_FUNDING] = entry[E_FUNDING]
    trades[r, T_PNL] = pnl
    trades[r, T_REASON] = reason
    trades[r, T_ENTRY_KIND] = entry[E_KIND]


@njit(cache=True, inline="always")
def _open_entry(t: int, px: float, fee_rate: float, kind: int, side: int, k: int, entries: np.ndarray,
                balance: float, order_size: float, lev: float, min_notional: float) -> tuple[bool, float, int]:
    """Fill entry ``k`` of a position on ``side`` (0 when flat) at ``px`` (kind 0 market, 1 limit), sized by
    :func:`mlrisk.strategy.entry_size` on the free balance (equity marked at ``px`` minus margin in use);
    fee ``fee_rate`` x notional. Returns (filled, new balance, new entry count)."""
    m_tot = 0.0
    upnl = 0.0
    for i in range(k):
        m_tot += entries[i, E_MARGIN]
        upnl += side * entries[i, E_QTY] * (px - entries[i, E_PRICE])
    margin, notional = entry_size(balance + upnl - m_tot, order_size, lev, min_notional)
    if not margin > 0.0:
        return False, balance, k
    entries[k, E_QTY] = notional / px
    entries[k, E_PRICE] = px
    entries[k, E_MARGIN] = margin
    entries[k, E_FEE] = fee_rate * notional
    entries[k, E_FUNDING] = 0.0
    entries[k, E_CANDLE] = t
    entries[k, E_KIND] = kind
    return True, balance - fee_rate * notional, k + 1


@njit(cache=True)
def new_state(prm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fresh account for parameter vector ``prm``: ``(account, entries, orders)`` (see ``A_*``,
    ``E_*``, ``O_*``): flat, no resting orders, balance ``prm[P_INITIAL]``."""
    pm = int(prm[P_PYRAMID_MAX])
    acct = np.zeros(N_ACCOUNT)
    acct[A_BALANCE] = prm[P_INITIAL]
    acct[A_FIRST_CANDLE] = -1.0
    acct[A_LAST_LIMIT_FILL] = -1.0
    return acct, np.zeros((pm, N_ENTRY_FIELDS)), np.zeros((pm, N_ORDER_FIELDS))


@njit(cache=True, inline="always")
def step(acct: np.ndarray, entries: np.ndarray, orders: np.ndarray, t: int, o: float, h: float, lo: float,
         c: float, p_up: float, prm: np.ndarray, can_enter: bool, trades: np.ndarray, ntr: int) -> tuple[float, int]:
    """What happens to one account in candle ``t`` (open ``o``, high ``h``, low ``lo``, close ``c``; P(up)
    ``p_up`` known at its close), in the order of the module docstring: fills at the open, resting
    limit fills, intrabar exits, close-checked exits, funding, mark to market, then the orders
    decided at the close (:func:`mlrisk.strategy.order_intents`), placed only if ``can_enter``
    (the backtest passes False on the last candle, where nothing could fill).

    Updates ``acct``, ``entries`` and ``orders`` in place, writes closed entries to ``trades`` from
    row ``ntr`` on (at most ``2 * pyramid_max`` rows per candle) and returns (equity at the close,
    new row count). ``t`` counts candles (entry candles, ``hold`` and limit expiry use it)."""
    balance = acct[A_BALANCE]
    side = int(acct[A_SIDE])
    k = int(acct[A_ENTRIES])
    first_idx = int(acct[A_FIRST_CANDLE])
    last_limit_fill = int(acct[A_LAST_LIMIT_FILL])
    l_side = int(acct[A_ORDER_SIDE])
    nl = int(acct[A_ORDERS])
    m_entry = int(acct[A_MARKET_ENTRY])
    m_exit = acct[A_MARKET_EXIT] != 0.0

    lev = prm[P_LEVERAGE]
    order_size = prm[P_ORDER_SIZE]
    pm = int(prm[P_PYRAMID_MAX])
    hold = int(prm[P_HOLD])
    tp = prm[P_TAKE_PROFIT]
    sl = prm[P_STOP_LOSS]
    at_close = prm[P_EXIT_CLOSE] > 0.5
    fee = prm[P_FEE]
    slip = prm[P_SLIPPAGE]
    mmr = prm[P_MMR]
    liq_fee = prm[P_LIQ_FEE]
    min_notional = prm[P_MIN_NOTIONAL]

    # ---- (1) at the open: a gap beyond the liquidation price liquidates; then exits, then market entries
    if side != 0:
        _, liq = _position(side, k, entries, mmr)
        if (side == 1 and o <= liq) or (side == -1 and o >= liq):
            balance, ntr = _close_position(t, liq, R_LIQUIDATION, fee, side, k, entries, balance, liq_fee, mmr,
                                           trades, ntr)
            side = 0
            k = 0
    if side != 0 and (m_exit or (hold > 0 and t - first_idx >= hold)):
        reason = R_SIGNAL if m_exit else R_HOLD
        balance, ntr = _close_position(t, o * (1.0 - side * slip), reason, fee, side, k, entries, balance, liq_fee,
                                       mmr, trades, ntr)
        side = 0
        k = 0
    m_exit = False
    if m_entry != 0:
        filled, balance, k = _open_entry(t, o * (1.0 + m_entry * slip), fee, 0, side, k, entries, balance,
                                         order_size, lev, min_notional)
        if filled and side == 0:
            side = m_entry
            first_idx = t
        m_entry = 0
    # ---- (2) resting limit orders
    # (orders past their ttl were dropped at the previous close, so every order here may fill)
    j = 0
    while j < nl:
        px = orders[j, O_PRICE]
        hit = (l_side == 1 and lo < px) or (l_side == -1 and h > px)
        if hit and (side == 0 or side == l_side) and k < pm:
            filled, balance, k = _open_entry(t, px, prm[P_MAKER_FEE], 1, side, k, entries, balance, order_size, lev,
                                             min_notional)
            if filled:
                if side == 0:
                    side = l_side
                    first_idx = t
                last_limit_fill = t
            nl = _drop_order(j, nl, orders)
            continue
        j += 1
    if nl == 0:
        l_side = 0
    # ---- (3) intrabar exits
    if side != 0 and last_limit_fill != t:
        avg, liq = _position(side, k, entries, mmr)
        tp_lvl, stop = protective_levels(side, avg, tp, sl)
        exit_px = 0.0
        reason = -1
        if side == 1:
            liq_hit = lo <= liq
            stop_hit = (not at_close) and sl > 0.0 and lo <= stop
            tp_hit = (not at_close) and tp > 0.0 and h >= tp_lvl
            if liq_hit and (o <= liq or not stop_hit or liq >= stop):
                reason = R_LIQUIDATION
                exit_px = liq
            elif stop_hit:
                reason = R_STOP_LOSS
                exit_px = min(o, stop) * (1.0 - slip)
            elif tp_hit:
                reason = R_TAKE_PROFIT
                exit_px = max(o, tp_lvl) * (1.0 - slip)
        else:
            liq_hit = h >= liq
            stop_hit = (not at_close) and sl > 0.0 and h >= stop
            tp_hit = (not at_close) and tp > 0.0 and lo <= tp_lvl
            if liq_hit and (o >= liq or not stop_hit or liq <= stop):
                reason = R_LIQUIDATION
                exit_px = liq
            elif stop_hit:
                reason = R_STOP_LOSS
                exit_px = max(o, stop) * (1.0 + slip)
            elif tp_hit:
                reason = R_TAKE_PROFIT
                exit_px = min(o, tp_lvl) * (1.0 + slip)
        if reason >= 0:
            balance, ntr = _close_position(t, exit_px, reason, fee, side, k, entries, balance, liq_fee, mmr, trades, ntr)
            side = 0
            k = 0
    # ---- (4) at the close
    if side != 0 and at_close and last_limit_fill != t and (sl > 0.0 or tp > 0.0):
        avg, _ = _position(side, k, entries, mmr)
        x = exit_at_close(side, avg, c, tp, sl)
        if x != 0:
            reason = R_STOP_LOSS if x < 0 else R_TAKE_PROFIT
            balance, ntr = _close_position(t, c * (1.0 - side * slip), reason, fee, side, k, entries, balance, liq_fee,
                                           mmr, trades, ntr)
            side = 0
            k = 0
    upnl = 0.0
    if side != 0:
        funding = prm[P_FUNDING]
        if funding != 0.0:
            for i in range(k):
                f = funding * entries[i, E_QTY] * c * side
                entries[i, E_FUNDING] += f
                balance -= f
        for i in range(k):
            upnl += side * entries[i, E_QTY] * (c - entries[i, E_PRICE])
    equity = max(balance + upnl, 0.0)
    # expired limit orders stop counting once they can no longer fill
    j = 0
    while j < nl:
        if orders[j, O_EXPIRE] <= t:
            nl = _drop_order(j, nl, orders)
            continue
        j += 1
    if nl == 0:
        l_side = 0
    close_pos, cancel, e_side, e_kind, e_price = order_intents(
        p_up, c, prm[P_THRESHOLD], side, k, l_side, nl, pm, int(prm[P_DIRECTION]), prm[P_ENTRY_LIMIT] > 0.5,
        prm[P_LIMIT_OFFSET])
    if close_pos:
        m_exit = True
    if cancel:
        nl = 0
        l_side = 0
    if e_side != 0 and can_enter:
        if e_kind == ENTRY_LIMIT:
            l_side = e_side
            orders[nl, O_PRICE] = e_price
            orders[nl, O_EXPIRE] = t + int(prm[P_LIMIT_TTL])
            nl += 1
        else:
            m_entry = e_side

    acct[A_BALANCE] = balance
    acct[A_SIDE] = side
    acct[A_ENTRIES] = k
    acct[A_FIRST_CANDLE] = first_idx
    acct[A_LAST_LIMIT_FILL] = last_limit_fill
    acct[A_ORDER_SIDE] = l_side
    acct[A_ORDERS] = nl
    acct[A_MARKET_ENTRY] = m_entry
    acct[A_MARKET_EXIT] = 1.0 if m_exit else 0.0
    return equity, ntr


@njit(cache=True)
def close_out(acct: np.ndarray, entries: np.ndarray, t: int, c: float, prm: np.ndarray, trades: np.ndarray,
              ntr: int) -> tuple[float, int]:
    """Close the open position, if any, at ``c`` moved by slippage (reason ``end``) in candle ``t``; resting
    and pending orders stay. Returns (equity, new trade row count); the backtest calls it after its last candle."""
    side = int(acct[A_SIDE])
    if side != 0:
        balance, ntr = _close_position(t, c * (1.0 - side * prm[P_SLIPPAGE]), R_END, prm[P_FEE], side,
                                       int(acct[A_ENTRIES]), entries, acct[A_BALANCE], prm[P_LIQ_FEE], prm[P_MMR],
                                       trades, ntr)
        acct[A_BALANCE] = balance
        acct[A_SIDE] = 0.0
        acct[A_ENTRIES] = 0.0
    return max(acct[A_BALANCE], 0.0), ntr


@njit(cache=True)
def run_kernel(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
               prm: np.ndarray, equity: np.ndarray, trades: np.ndarray) -> int:
    """Simulate one parameter vector: :func:`step` on every candle from :func:`new_state`, then
    :func:`close_out` at the last close. Fills ``equity`` (one value per close) and ``trades`` (rows of
    :data:`N_TRADE_FIELDS`, at least ``len(close) + 1`` rows); returns the number of trade rows."""
    n = close.shape[0]
    acct, entries, orders = new_state(prm)
    ntr = 0
    for t in range(n):
        equity[t], ntr = step(acct, entries, orders, t, open_[t], high[t], low[t], close[t], p_up[t], prm,
                              t < n - 1, trades, ntr)
    if acct[A_SIDE] != 0 and n > 0:
        equity[n - 1], ntr = close_out(acct, entries, n - 1, close[n - 1], prm, trades, ntr)
    return ntr


@njit(cache=True)
def summarise(trades: np.ndarray, ntr: int, out: np.ndarray) -> None:
    """Reduce trade rows to the sweep summary (trades, wins, gross profit/loss, fees, funding,
    liquidations, candles in the market)."""
    for f in range(N_SUMMARY):
        out[f] = 0.0
    last_exit = -1.0
    for r in range(ntr):
        pnl = trades[r, T_PNL]
        out[S_TRADES] += 1
        if pnl > 0:
            out[S_WINS] += 1
            out[S_GROSS_PROFIT] += pnl
        else:
            out[S_GROSS_LOSS] -= pnl
        out[S_FEES] += trades[r, T_ENTRY_FEE] + trades[r, T_EXIT_FEE]
        out[S_FUNDING] += trades[r, T_FUNDING]
        if trades[r, T_REASON] == R_LIQUIDATION:
            out[S_LIQUIDATIONS] += 1
    # exposure: candles from each position's first entry to its exit (positions share exit rows)
    r = 0
    while r < ntr:
        ex = trades[r, T_EXIT_IDX]
        first = trades[r, T_ENTRY_IDX]
        r2 = r
        while r2 < ntr and trades[r2, T_EXIT_IDX] == ex:
            first = min(first, trades[r2, T_ENTRY_IDX])
            r2 += 1
        if ex != last_exit:
            out[S_EXPOSURE] += ex - first
            last_exit = ex
        r = r2


@njit(cache=True, parallel=True)
def sweep_kernel(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
                 prms: np.ndarray, equities: np.ndarray, summaries: np.ndarray) -> None:
    """Run every row of ``prms`` in parallel (all cores); fill ``equities`` and ``summaries``."""
    n = close.shape[0]
    for i in prange(prms.shape[0]):
        trades = np.empty((n + 1, N_TRADE_FIELDS))
        ntr = run_kernel(open_, high, low, close, p_up, prms[i], equities[i], trades)
        summarise(trades, ntr, summaries[i])


def _ensure_float(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def run(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
        prm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One backtest: (equity per close, trade rows). Inputs are float64 arrays of equal length."""
    arrays = [_ensure_float(a) for a in (open_, high, low, close, p_up)]
    n = len(arrays[0])
    equity = np.empty(n)
    trades = np.empty((n + 1, N_TRADE_FIELDS))
    ntr = run_kernel(*arrays, _ensure_float(prm), equity, trades)
    return equity, trades[:ntr].copy()


def sweep(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
          prms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many backtests in parallel: (equity matrix combos x candles, summary matrix combos x N_SUMMARY)."""
    arrays = [_ensure_float(a) for a in (open_, high, low, close, p_up)]
    prms = np.ascontiguousarray(np.atleast_2d(prms), dtype=np.float64)
    equities = np.empty((prms.shape[0], len(arrays[0])))
    summaries = np.empty((prms.shape[0], N_SUMMARY))
    sweep_kernel(*arrays, prms, equities, summaries)
    return equities, summaries

