"""A fast, exact, leveraged long/short backtest engine (numba): arrays in, arrays out.

Every assumption, in the order the engine applies them. Units: prices in quote currency,
rates and offsets as fractions, ``slippage_bps`` in basis points, times in candles.

**Signal.** At the close of candle t the probability of up ``p`` gives long if
``p >= 0.5 + threshold``, short if ``p <= 0.5 - threshold``, else none (NaN = none); see
:func:`mlrisk.strategy.decide`, which the live bot calls too. A long signal closes an open
short (at the next open) and cancels resting short orders, then adds one long entry if the long
side holds fewer than ``pyramid_max`` entries, filled plus pending. Shorts mirror this. With
``direction: long`` (or ``short``) a signal for the other side only closes and cancels.

**Entries.** ``entry: market`` fills at the open of candle t+1, moved against the trader by
``slippage_bps``. ``entry: limit`` rests at ``close * (1 - limit_offset)`` for a long
(``1 + limit_offset`` for a short) and fills at exactly that price on the first later candle whose
low (high) trades strictly through it; it is cancelled after ``limit_ttl`` candles (it may fill on
candles t+1 .. t+limit_ttl). A limit order never fills on the candle that placed it.

**Size.** Each entry's margin is ``order_size * free balance`` at its fill, where free balance is
equity (marked at the fill price) minus the margin in use (the position's isolated wallet: its
entries' margin less the funding paid from it, plus the funding received; see **Costs**); its notional is
``margin * leverage`` (isolated margin). If the notional is below ``min_notional`` the entry is
skipped. With ``lot_step`` > 0 (the exchange's LOT_SIZE / MARKET_LOT_SIZE stepSize, base asset units;
see :func:`mlrisk.backtest.futures.lot_filters`) the quantity ``notional / price`` is rounded down to
the step (:func:`mlrisk.exchange_filters.floor_qty`, the float twin of the live bot's Decimal
``floor_to``), the notional becomes ``quantity * price`` and the margin ``notional / leverage``; an
entry whose rounded quantity is 0 or whose rounded notional is below ``min_notional`` is skipped
(Binance's MIN_NOTIONAL / NOTIONAL filter). ``lot_step`` 0 = no rounding. A side's entries form one
position at their quantity-weighted average price.

**Exits** close the whole position: after ``hold`` candles since its first entry (at the open of
candle first + hold; 0 = never), on an opposite signal (at the next open), at ``take_profit`` /
``stop_loss`` (fractions of the average entry price), at liquidation, or at the end of the data
(at the last close, reason ``end``). ``exit_check: intrabar`` fills take-profit and stop at their
level when the candle's high/low touches it, or at the open if the candle opens beyond the level;
the stop wins when both are touched in one candle. ``exit_check: close`` checks and fills them at
the close (the original tool's rule, the one documented exception to next-open fills).
Liquidation is always intrabar: the isolated-margin liquidation price is Binance's
``(M + cum - side*Q*P) / (Q*mmr - side*Q)``, i.e. ``(Q*P - M - cum) / (Q*(1 - mmr))`` for a long and
``(Q*P + M + cum) / (Q*(1 + mmr))`` for a short (Q quantity, P average price, M margin; see
:func:`mlrisk.strategy.liquidation_price`). ``mmr`` and ``cum`` are the maintenance margin rate and
amount of the leverage bracket holding the position's entry notional ``Q*P`` (``brackets``: the last
tier whose ``notionalFloor`` <= ``Q*P``; :func:`mlrisk.strategy.maintenance_bracket`); without
brackets, the flat ``maintenance_margin_rate`` and ``cum`` 0. (Binance's FAQ re-tiers when the
notional at the liquidation price falls in another bracket; the engine keeps the entry notional's
tier: the two differ only for positions within a liquidation distance of a bracket floor.)
Liquidation watches the **mark price** where mark candles are given: the mark candle's adverse extreme
(low for a long, high for a short) against the liquidation price, and the mark open for the gap at
the open; where no mark data exists (no ``mark`` rows, or a row holding a NaN) the last-price candle
stands in. ``M`` is the isolated wallet: the entries' margin less the funding paid from it since
they filled (plus the funding received), so funding moves the liquidation price (see **Costs**).
When it is reached the position closes at the liquidation price and its whole isolated wallet is
lost, plus ``liquidation_fee_rate`` on the notional at that price: Binance takes over a liquidated
isolated position at its bankruptcy price, so the trader loses the position's isolated margin
(the price: Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93, isolated mode: TMM = UPNL = 0;
the recorded exit price stays the liquidation price, the engine's convention). Between a stop
(on the last price) and the liquidation price, the level nearer the entry is reached first; an open
beyond the liquidation price liquidates, and so does any exit whose fill price would be at or beyond
it (the exchange would have got there first; isolated margin cannot lose more than the margin).

**Costs.** ``fee_rate`` (taker) on market entries and on every exit, ``maker_fee_rate`` on limit
fills, each on the fill's notional. Every exit except liquidation also pays slippage.
**Funding from history** (``funding``, one rate per candle: the sum of the settlements charged at its
open; :func:`mlrisk.backtest.futures.funding_per_candle` states which settlement goes to which open):
at the open of candle t, before anything else happens there, each entry of the position held into
that open pays ``funding[t] * quantity * mark_open[t]`` (the open of the last-price candle where no
mark data exists), paid by longs (received by shorts) when positive; a position opened at that open
pays nothing for it, one closed at that open pays it. Binance charges a settlement on the positions
open at its time, ``funding amount = mark price * position size * funding rate`` (Binance FAQ
"Introduction to Binance Futures Funding Rates"). **Without a history** (``funding`` empty)
the constant ``funding_rate`` applies: per 8 hours on the open notional at each close, pro rata to
the candle length, paid by longs when positive. Funding adds to each entry's ``T_FUNDING`` and the
summary's ``S_FUNDING`` either way. **Funding goes to the isolated margin**: the bot trades isolated
margin, where Binance pays a funding fee from (or into) the position's isolated wallet, not the cross
wallet (USDⓈ-M user data stream, "Event: Balance and Position Update": "When "FUNDING FEE" occurs in an
isolated position, ACCOUNT_UPDATE will be pushed with only the balance B ... and the relative position
message P (including the isolated position on which the "FUNDING FEE" occurs only ...)", its ``iw``
being the isolated wallet, https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Balance-and-Position-Update;
the liquidation FAQ's ``WB`` of an isolated position is that isolated wallet). So the cash balance
pays the funding and the position's margin in use shrinks by it (grows when received): the free
balance for new entries is unchanged, the liquidation price moves closer to the market when funding
is paid (further away when received), and a liquidated position loses its posted margin: the funding
paid from it was paid before, the funding received into it is lost with it (the trade's P&L:
``-margin - fees``, of which ``T_FUNDING``). The test
exchange ``tests/fake_futures.py`` settles funding the same way.

**Order of events in candle t.** (1) At the open: funding settled at this open (history); a position
whose liquidation price the (mark) open gapped through is liquidated; then orders decided at the
close of t-1 fill, exits first (opposite signal, ``hold``), then market entries. (2) Resting limit orders fill (oldest
first). (3) Intrabar exits: liquidation, stop, take-profit. A position whose latest entry was
filled by a limit order inside candle t is first checked on candle t+1. (4) At the close:
close-checked exits, funding (the constant rate, without history), mark to market; then the new
signal is read and orders placed.

**Equity** is marked to market at every close and can never go below zero: a liquidation never
takes more than the account holds. An account whose free balance cannot fund ``min_notional``
stops opening entries.

**Structure.** One account's state between candles is :class:`Account` (scalars: balance, position
side, entry and order counts, the candle of the first entry and of the latest limit fill, a
pending market entry or exit) plus two small float64 arrays, ``entries`` (``pyramid_max`` rows of
:data:`E_QTY` .. :data:`E_KIND`) and ``orders`` (``pyramid_max`` rows of :data:`O_PRICE`,
:data:`O_EXPIRE`). :func:`advance` applies the events above to that state for each candle it is
given; the backtest (:func:`run_kernel`) gives it every candle, then closes at the end
(:func:`close_out`); the sweep runs :func:`run_kernel` per parameter row in parallel;
:class:`mlrisk.live.sim_account.AccountState` gives it one candle at a time (for the live bot's
paper broker) and saves and restores the state. :func:`advance_market` takes the market inputs
(``mark`` rows of :data:`MK_OPEN` .. :data:`MK_LOW`, ``funding`` per candle, ``brackets`` rows of
:data:`mlrisk.strategy.BR_FLOOR` ..), each empty for its fallback; :func:`advance` is it with all three
empty (today's rules, bit for bit). Every trading rule a real exchange broker needs too is
in :mod:`mlrisk.strategy` and used here: :func:`~mlrisk.strategy.order_intents` (close, cancel,
entry side, kind and limit price at a close), :func:`~mlrisk.strategy.entry_size` (the margin
rule at a fill), :func:`~mlrisk.strategy.protective_levels` (take-profit and stop prices),
:func:`~mlrisk.strategy.liquidation_price` and :func:`~mlrisk.strategy.exit_at_close`. What stays
here is the simulated exchange: fill prices, slippage, fees, funding, order expiry.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from mlrisk.exchange_filters import floor_qty
from mlrisk.strategy import (ENTRY_LIMIT, N_BRACKET_FIELDS, entry_size, exit_at_close, hold_exit_due, liquidation_price,
                             maintenance_bracket, order_intents, protective_levels)

# parameter vector layout
(P_INITIAL, P_THRESHOLD, P_LEVERAGE, P_ORDER_SIZE, P_PYRAMID_MAX, P_ENTRY_LIMIT, P_LIMIT_OFFSET, P_LIMIT_TTL,
 P_HOLD, P_TAKE_PROFIT, P_STOP_LOSS, P_EXIT_CLOSE, P_FEE, P_MAKER_FEE, P_SLIPPAGE, P_FUNDING, P_MMR,
 P_LIQ_FEE, P_MIN_NOTIONAL, P_DIRECTION, P_LOT_STEP) = range(21)
N_PARAMS = 21

# mark-price candle columns (one row per candle; a row with a NaN = no mark data for that candle)
(MK_OPEN, MK_HIGH, MK_LOW) = range(3)
N_MARK_FIELDS = 3

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


class Config(NamedTuple):
    """The parameter vector unpacked once (see ``P_*``; :func:`config`), typed for the compiled step."""
    threshold: float
    leverage: float
    order_size: float
    pyramid_max: int
    limit_entry: bool
    limit_offset: float
    limit_ttl: int
    hold: int
    take_profit: float
    stop_loss: float
    exit_at_close: bool
    fee: float
    maker_fee: float
    slippage: float
    funding: float
    mmr: float
    liq_fee: float
    min_notional: float
    direction: int
    lot_step: float


class Account(NamedTuple):
    """The account's scalars between candles (the rest of its state: ``entries`` and ``orders`` arrays)."""
    balance: float          # cash: initial equity + realised P&L - fees - funding, quote currency
    side: int               # the open position's side, +1/-1, 0 when flat
    n_entries: int          # filled entries of the position (rows in use of ``entries``)
    first_candle: int       # candle of the position's first entry (-1 none)
    last_limit_fill: int    # candle of the latest limit fill (-1 none)
    order_side: int         # side of the resting limit orders, 0 when none
    n_orders: int           # resting limit orders (rows in use of ``orders``)
    market_entry: int       # side of a market entry to fill at the next open, 0 none
    market_exit: bool       # close the position at the next open


# the position's filled entries, one row each (pyramid_max rows, the first n_entries in use)
(E_QTY, E_PRICE, E_MARGIN, E_FEE, E_FUNDING, E_CANDLE, E_KIND) = range(7)
N_ENTRY_FIELDS = 7
# the resting limit orders, oldest first (pyramid_max rows, the first n_orders in use); expiry: the last
# candle in which the order may fill (placed at close t: t + limit_ttl), dropped at that candle's close
(O_PRICE, O_EXPIRE) = range(2)
N_ORDER_FIELDS = 2
STATE_VERSION = 1


@njit(cache=True)
def config(prm: np.ndarray) -> Config:
    """The parameter vector as a :class:`Config`."""
    return Config(prm[P_THRESHOLD], prm[P_LEVERAGE], prm[P_ORDER_SIZE], int(prm[P_PYRAMID_MAX]),
                  prm[P_ENTRY_LIMIT] > 0.5, prm[P_LIMIT_OFFSET], int(prm[P_LIMIT_TTL]), int(prm[P_HOLD]),
                  prm[P_TAKE_PROFIT], prm[P_STOP_LOSS], prm[P_EXIT_CLOSE] > 0.5, prm[P_FEE], prm[P_MAKER_FEE],
                  prm[P_SLIPPAGE], prm[P_FUNDING], prm[P_MMR], prm[P_LIQ_FEE], prm[P_MIN_NOTIONAL],
                  int(prm[P_DIRECTION]), prm[P_LOT_STEP])


@njit(cache=True, inline="always")
def _drop_order(j: int, nl: int, orders: np.ndarray) -> int:
    """Remove resting order ``j`` of ``nl`` (later orders move up, keeping their order); returns ``nl - 1``."""
    for jj in range(j, nl - 1):
        orders[jj, O_PRICE] = orders[jj + 1, O_PRICE]
        orders[jj, O_EXPIRE] = orders[jj + 1, O_EXPIRE]
    return nl - 1


@njit(cache=True, inline="always")
def _position(side: int, k: int, entries: np.ndarray, mmr: float, brackets: np.ndarray) -> tuple[float, float]:
    """The open position's average entry price and isolated-margin liquidation price, with the
    maintenance tier of its entry notional (``brackets``; none: the flat ``mmr``) and the isolated
    wallet: the entries' margin less the funding paid from it (plus the funding received)."""
    q_tot = 0.0
    m_tot = 0.0
    cost = 0.0
    for i in range(k):
        q_tot += entries[i, E_QTY]
        m_tot += entries[i, E_MARGIN] - entries[i, E_FUNDING]  # the isolated wallet: funding is paid from it
        cost += entries[i, E_QTY] * entries[i, E_PRICE]
    avg = cost / q_tot
    if brackets is None:  # compiled away: numba prunes the branch by the argument's type
        liq = liquidation_price(side, q_tot, avg, m_tot, mmr, 0.0)
    else:
        rate, cum = maintenance_bracket(cost, brackets, mmr)
        liq = liquidation_price(side, q_tot, avg, m_tot, rate, cum)
    return avg, liq


@njit(cache=True)
def _close_position(t: int, px: float, reason: int, fee_rate: float, side: int, k: int, entries: np.ndarray,
                    balance: float, liq_fee_rate: float, mmr: float, brackets: np.ndarray, trades: np.ndarray,
                    ntr: int) -> tuple[float, int]:
    """Close all ``k`` entries at ``px``; returns (new balance, new trade count). An exit whose
    price is at or beyond the liquidation price is a liquidation (the exchange would get there first)."""
    if reason != R_LIQUIDATION:
        _, liq = _position(side, k, entries, mmr, brackets)
        if (side == 1 and px <= liq) or (side == -1 and px >= liq):
            reason = R_LIQUIDATION
            px = liq
    if reason == R_LIQUIDATION:
        m_total = 0.0  # the isolated wallet: margin less the funding already paid from it
        fee_total = 0.0
        for i in range(k):
            m_total += entries[i, E_MARGIN] - entries[i, E_FUNDING]
            fee_total += liq_fee_rate * entries[i, E_QTY] * px
        loss = m_total + fee_total
        scale = 1.0
        if loss > balance:  # never take more than the account holds
            scale = max(balance, 0.0) / loss if loss > 0 else 0.0
        for i in range(k):
            exit_fee = liq_fee_rate * entries[i, E_QTY] * px * scale
            pnl = -(entries[i, E_MARGIN] - entries[i, E_FUNDING]) * scale - exit_fee - entries[i, E_FEE] - entries[i, E_FUNDING]
            _record(trades, ntr, t, side, entries, i, px, exit_fee, pnl, reason)
            ntr += 1
        return balance - loss * scale, ntr
    for i in range(k):
        exit_fee = fee_rate * entries[i, E_QTY] * px
        gross = side * entries[i, E_QTY] * (px - entries[i, E_PRICE])
        pnl = gross - entries[i, E_FEE] - exit_fee - entries[i, E_FUNDING]
        balance += gross - exit_fee
        _record(trades, ntr, t, side, entries, i, px, exit_fee, pnl, reason)
        ntr += 1
    return balance, ntr


@njit(cache=True)
def _record(trades: np.ndarray, r: int, exit_idx: int, side: int, entries: np.ndarray, i: int, exit_price: float,
            exit_fee: float, pnl: float, reason: int) -> None:
    """Write trade row ``r``: entry ``i`` closed in candle ``exit_idx`` at ``exit_price``."""
    trades[r, T_ENTRY_IDX] = entries[i, E_CANDLE]
    trades[r, T_EXIT_IDX] = exit_idx
    trades[r, T_SIDE] = side
    trades[r, T_ENTRY_PRICE] = entries[i, E_PRICE]
    trades[r, T_EXIT_PRICE] = exit_price
    trades[r, T_QTY] = entries[i, E_QTY]
    trades[r, T_MARGIN] = entries[i, E_MARGIN]
    trades[r, T_ENTRY_FEE] = entries[i, E_FEE]
    trades[r, T_EXIT_FEE] = exit_fee
    trades[r, T_FUNDING] = entries[i, E_FUNDING]
    trades[r, T_PNL] = pnl
    trades[r, T_REASON] = reason
    trades[r, T_ENTRY_KIND] = entries[i, E_KIND]


@njit(cache=True, inline="always")
def _open_entry(t: int, px: float, fee_rate: float, kind: int, side: int, k: int, entries: np.ndarray,
                balance: float, order_size: float, lev: float, min_notional: float,
                lot_step: float, lots: np.ndarray) -> tuple[bool, float, int]:
    """Fill entry ``k`` of a position on ``side`` (0 when flat) at ``px`` (kind 0 market, 1 limit), sized by
    :func:`mlrisk.strategy.entry_size` on the free balance (equity marked at ``px`` minus margin in use,
    the isolated wallet: margin less funding paid);
    with ``lot_step`` > 0 the quantity is rounded down to it (:func:`mlrisk.exchange_filters.floor_qty`),
    the notional and margin follow, and an entry whose rounded notional is 0 or below ``min_notional``
    is skipped (``lots`` None: never, compiled away; see :func:`advance_market`). Fee ``fee_rate`` x notional.
    Returns (filled, new balance, new entry count)."""
    m_tot = 0.0
    upnl = 0.0
    for i in range(k):
        m_tot += entries[i, E_MARGIN] - entries[i, E_FUNDING]
        upnl += side * entries[i, E_QTY] * (px - entries[i, E_PRICE])
    margin, notional = entry_size(balance + upnl - m_tot, order_size, lev, min_notional)
    if not margin > 0.0:
        return False, balance, k
    qty = notional / px
    if lots is not None:  # compiled away without a lot step (numba prunes the branch by the argument's type)
        if lot_step > 0.0:
            qty = floor_qty(qty, lot_step)
            notional = qty * px
            if not (qty > 0.0 and notional >= min_notional):
                return False, balance, k
            margin = notional / lev
    entries[k, E_QTY] = qty
    entries[k, E_PRICE] = px
    entries[k, E_MARGIN] = margin
    entries[k, E_FEE] = fee_rate * notional
    entries[k, E_FUNDING] = 0.0
    entries[k, E_CANDLE] = t
    entries[k, E_KIND] = kind
    return True, balance - fee_rate * notional, k + 1


@njit(cache=True)
def fresh_state(initial_equity: float, pyramid_max: int) -> tuple[Account, np.ndarray, np.ndarray]:
    """A fresh account: ``(Account, entries, orders)``, flat, no orders, balance ``initial_equity``."""
    return (Account(initial_equity, 0, 0, -1, -1, 0, 0, 0, False), np.zeros((pyramid_max, N_ENTRY_FIELDS)),
            np.zeros((pyramid_max, N_ORDER_FIELDS)))


@njit(cache=True)
def advance(acct: Account, entries: np.ndarray, orders: np.ndarray, t0: int, open_: np.ndarray, high: np.ndarray,
            low: np.ndarray, close: np.ndarray, p_up: np.ndarray, cfg: Config, final: bool, trades: np.ndarray,
            ntr: int, equity: np.ndarray) -> tuple[Account, int]:
    """:func:`advance_market` without funding history, mark prices or brackets (the constant
    ``funding_rate``, liquidation on the last price, the flat ``maintenance_margin_rate``)."""
    return advance_market(acct, entries, orders, t0, open_, high, low, close, p_up, None, None, None, LOTS_ON, cfg,
                          final, trades, ntr, equity)


@njit(cache=True)
def advance_market(acct: Account, entries: np.ndarray, orders: np.ndarray, t0: int, open_: np.ndarray,
                   high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray, mark: np.ndarray,
                   funding: np.ndarray, brackets: np.ndarray, lots: np.ndarray, cfg: Config, final: bool,
                   trades: np.ndarray, ntr: int, equity: np.ndarray) -> tuple[Account, int]:
    """Run one account through candles ``t0, t0 + 1, ...`` (one per element of ``open_``, ``high``,
    ``low``, ``close`` and ``p_up``, the probability of up known at that candle's close). The live
    bot's paper broker calls it with one candle at a time (:mod:`mlrisk.live.sim_account`), the
    backtest with all of them: the same compiled code either way.

    ``mark``: the mark-price candles, one row per candle (:data:`MK_OPEN`, :data:`MK_HIGH`,
    :data:`MK_LOW`), or 0 rows (no mark data: liquidation on the last price); a row holding a NaN
    falls back to the last price for that candle. ``funding``: the funding rate settled at each
    candle's open (the sum of its settlements, 0 where none; see
    :func:`mlrisk.backtest.futures.funding_per_candle`), or 0 elements (no history: the constant
    ``funding_rate`` at each close). ``brackets``: the maintenance tiers (rows of
    :data:`mlrisk.strategy.BR_FLOOR` ..), or 0 rows (the flat ``maintenance_margin_rate``).
    All three None (what :func:`advance` passes): the same fallbacks, compiled without the
    futures code (numba prunes ``is None`` branches by type), so the spot path keeps its speed.
    ``lots``: :data:`LOTS_ON` (entries are rounded to ``cfg.lot_step`` when it is > 0) or None (never
    rounded: the rounding compiled away, for parameters whose ``lot_step`` is 0; :func:`lots_for`).
    Compiled into the candle loop, the rounding alone made the loop about 20 % slower (measured).

    Each candle, in the order of the module docstring: fills at the open, resting limit fills,
    intrabar exits, close-checked exits, funding, mark to market, then the orders decided at the
    close by :func:`mlrisk.strategy.order_intents`. With ``final`` the last candle given is the end
    of the data: no order is placed at its close (nothing could fill it).

    Updates ``entries`` and ``orders`` in place, writes each close's equity to ``equity`` (one per
    candle given) and each closed entry to ``trades`` from row ``ntr`` on (at most
    ``2 * pyramid_max`` rows per candle). Returns (the account after the last candle, new row
    count). Candle numbers ``t`` (entry candles, ``hold``, limit expiry) count from any fixed origin.
    (One loop over the candles given rather than a one-candle function inlined in the backtest's
    loop: numba would then increment and decrement the three arrays' reference counts on every
    candle, which made the engine 1.4-1.8x slower when measured.)"""
    balance = acct.balance
    side = acct.side
    k = acct.n_entries
    first_idx = acct.first_candle
    last_limit_fill = acct.last_limit_fill
    l_side = acct.order_side
    nl = acct.n_orders
    m_entry = acct.market_entry
    m_exit = acct.market_exit

    lev = cfg.leverage
    order_size = cfg.order_size
    pm = cfg.pyramid_max
    hold = cfg.hold
    tp = cfg.take_profit
    sl = cfg.stop_loss
    at_close = cfg.exit_at_close
    fee = cfg.fee
    slip = cfg.slippage
    mmr = cfg.mmr
    liq_fee = cfg.liq_fee
    min_notional = cfg.min_notional
    lot_step = cfg.lot_step
    m = close.shape[0]
    has_mark = False
    if mark is not None:
        has_mark = mark.shape[0] > 0
    has_funding = False
    if funding is not None:
        has_funding = funding.shape[0] > 0

    for i_c in range(m):
        t = t0 + i_c
        o = open_[i_c]
        h = high[i_c]
        lo = low[i_c]
        c = close[i_c]
        # the liquidation check's prices: the mark candle where it has data, else the last price
        mo = o
        mh = h
        ml = lo
        if mark is not None:
            if has_mark:
                xo = mark[i_c, MK_OPEN]
                xh = mark[i_c, MK_HIGH]
                xl = mark[i_c, MK_LOW]
                if not (np.isnan(xo) or np.isnan(xh) or np.isnan(xl)):
                    mo = xo
                    mh = xh
                    ml = xl
        # ---- (1) at the open: funding settled at this open on the position held into it; a gap beyond
        # the liquidation price liquidates; then exits, then market entries
        if funding is not None:
            if has_funding and side != 0:
                rate = funding[i_c]
                if rate != 0.0:
                    for i in range(k):
                        f = rate * entries[i, E_QTY] * mo * side
                        entries[i, E_FUNDING] += f
                        balance -= f
        if side != 0:
            _, liq = _position(side, k, entries, mmr, brackets)
            if (side == 1 and mo <= liq) or (side == -1 and mo >= liq):
                balance, ntr = _close_position(t, liq, R_LIQUIDATION, fee, side, k, entries, balance, liq_fee, mmr,
                                               brackets, trades, ntr)
                side = 0
                k = 0
        if side != 0 and (m_exit or hold_exit_due(t, first_idx, hold)):
            reason = R_SIGNAL if m_exit else R_HOLD
            balance, ntr = _close_position(t, o * (1.0 - side * slip), reason, fee, side, k, entries, balance, liq_fee,
                                           mmr, brackets, trades, ntr)
            side = 0
            k = 0
        m_exit = False
        if m_entry != 0:
            filled, balance, k = _open_entry(t, o * (1.0 + m_entry * slip), fee, 0, side, k, entries, balance,
                                             order_size, lev, min_notional, lot_step, lots)
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
                filled, balance, k = _open_entry(t, px, cfg.maker_fee, 1, side, k, entries, balance, order_size, lev,
                                                 min_notional, lot_step, lots)
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
            avg, liq = _position(side, k, entries, mmr, brackets)
            tp_lvl, stop = protective_levels(side, avg, tp, sl)
            exit_px = 0.0
            reason = -1
            if side == 1:
                liq_hit = ml <= liq
                stop_hit = (not at_close) and sl > 0.0 and lo <= stop
                tp_hit = (not at_close) and tp > 0.0 and h >= tp_lvl
                if liq_hit and (mo <= liq or not stop_hit or liq >= stop):
                    reason = R_LIQUIDATION
                    exit_px = liq
                elif stop_hit:
                    reason = R_STOP_LOSS
                    exit_px = min(o, stop) * (1.0 - slip)
                elif tp_hit:
                    reason = R_TAKE_PROFIT
                    exit_px = max(o, tp_lvl) * (1.0 - slip)
            else:
                liq_hit = mh >= liq
                stop_hit = (not at_close) and sl > 0.0 and h >= stop
                tp_hit = (not at_close) and tp > 0.0 and lo <= tp_lvl
                if liq_hit and (mo >= liq or not stop_hit or liq <= stop):
                    reason = R_LIQUIDATION
                    exit_px = liq
                elif stop_hit:
                    reason = R_STOP_LOSS
                    exit_px = max(o, stop) * (1.0 + slip)
                elif tp_hit:
                    reason = R_TAKE_PROFIT
                    exit_px = min(o, tp_lvl) * (1.0 + slip)
            if reason >= 0:
                balance, ntr = _close_position(t, exit_px, reason, fee, side, k, entries, balance, liq_fee, mmr,
                                               brackets, trades, ntr)
                side = 0
                k = 0
        # ---- (4) at the close
        if side != 0 and at_close and last_limit_fill != t and (sl > 0.0 or tp > 0.0):
            avg, _ = _position(side, k, entries, mmr, brackets)
            x = exit_at_close(side, avg, c, tp, sl)
            if x != 0:
                reason = R_STOP_LOSS if x < 0 else R_TAKE_PROFIT
                balance, ntr = _close_position(t, c * (1.0 - side * slip), reason, fee, side, k, entries, balance,
                                               liq_fee, mmr, brackets, trades, ntr)
                side = 0
                k = 0
        upnl = 0.0
        if side != 0:
            funding_c = cfg.funding
            if funding_c != 0.0 and not has_funding:
                for i in range(k):
                    f = funding_c * entries[i, E_QTY] * c * side
                    entries[i, E_FUNDING] += f
                    balance -= f
            for i in range(k):
                upnl += side * entries[i, E_QTY] * (c - entries[i, E_PRICE])
        equity[i_c] = max(balance + upnl, 0.0)
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
            p_up[i_c], c, cfg.threshold, side, k, l_side, nl, pm, cfg.direction, cfg.limit_entry, cfg.limit_offset)
        if close_pos:
            m_exit = True
        if cancel:
            nl = 0
            l_side = 0
        if e_side != 0 and not (final and i_c == m - 1):
            if e_kind == ENTRY_LIMIT:
                l_side = e_side
                orders[nl, O_PRICE] = e_price
                orders[nl, O_EXPIRE] = t + cfg.limit_ttl
                nl += 1
            else:
                m_entry = e_side
    return Account(balance, side, k, first_idx, last_limit_fill, l_side, nl, m_entry, m_exit), ntr


@njit(cache=True)
def close_out(acct: Account, entries: np.ndarray, t: int, c: float, cfg: Config, trades: np.ndarray,
              ntr: int) -> tuple[Account, float, int]:
    """:func:`close_out_market` with the flat ``maintenance_margin_rate`` (no brackets)."""
    return close_out_market(acct, entries, t, c, cfg, None, trades, ntr)


@njit(cache=True)
def close_out_market(acct: Account, entries: np.ndarray, t: int, c: float, cfg: Config, brackets: np.ndarray,
                     trades: np.ndarray, ntr: int) -> tuple[Account, float, int]:
    """Close the open position, if any, at ``c`` moved by slippage (reason ``end``) in candle ``t``; resting
    and pending orders stay (``brackets`` as for :func:`advance_market`: a fill beyond the liquidation
    price is a liquidation). Returns (account, equity, new trade row count); the backtest calls it
    after its last candle."""
    balance = acct.balance
    if acct.side != 0:
        balance, ntr = _close_position(t, c * (1.0 - acct.side * cfg.slippage), R_END, cfg.fee, acct.side,
                                       acct.n_entries, entries, balance, cfg.liq_fee, cfg.mmr, brackets, trades, ntr)
        acct = Account(balance, 0, 0, acct.first_candle, acct.last_limit_fill, acct.order_side, acct.n_orders,
                       acct.market_entry, acct.market_exit)
    return acct, max(balance, 0.0), ntr


@njit(cache=True)
def run_kernel(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
               mark: np.ndarray, funding: np.ndarray, brackets: np.ndarray, lots: np.ndarray, prm: np.ndarray,
               equity: np.ndarray, trades: np.ndarray) -> int:
    """Simulate one parameter vector: :func:`advance_market` through every candle from :func:`fresh_state`
    (``mark``, ``funding``, ``brackets`` as there), then :func:`close_out_market` at the last close. Fills
    ``equity`` (one value per close) and ``trades`` (rows of :data:`N_TRADE_FIELDS`, at least
    ``len(close) + 1`` rows); returns the number of trade rows."""
    n = close.shape[0]
    cfg = config(prm)
    acct, entries, orders = fresh_state(prm[P_INITIAL], cfg.pyramid_max)
    acct, ntr = advance_market(acct, entries, orders, 0, open_, high, low, close, p_up, mark, funding, brackets, lots,
                               cfg, True, trades, 0, equity)
    if acct.side != 0 and n > 0:
        acct, equity[n - 1], ntr = close_out_market(acct, entries, n - 1, close[n - 1], cfg, brackets, trades, ntr)
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
                 mark: np.ndarray, funding: np.ndarray, brackets: np.ndarray, lots: np.ndarray, prms: np.ndarray,
                 equities: np.ndarray, summaries: np.ndarray) -> None:
    """Run every row of ``prms`` in parallel (all cores); fill ``equities`` and ``summaries``."""
    n = close.shape[0]
    for i in prange(prms.shape[0]):
        trades = np.empty((n + 1, N_TRADE_FIELDS))
        ntr = run_kernel(open_, high, low, close, p_up, mark, funding, brackets, lots, prms[i], equities[i], trades)
        summarise(trades, ntr, summaries[i])


#: the ``lots`` argument that keeps the lot-step rounding compiled in (:func:`advance_market`)
LOTS_ON = np.empty(0)


def lots_for(prms: np.ndarray) -> np.ndarray | None:
    """:data:`LOTS_ON` when a parameter vector (or any row of a matrix of them) has a lot step, else None."""
    return LOTS_ON if (np.atleast_2d(prms)[:, P_LOT_STEP] > 0).any() else None


def _ensure_float(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def market_arrays(n: int, mark: np.ndarray | None = None, funding: np.ndarray | None = None,
                  brackets: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The engine's ``(mark, funding, brackets)`` inputs for ``n`` candles, checked: ``mark`` an
    ``n x 3`` array (mark open, high, low; NaN rows allowed) or None, ``funding`` ``n`` rates or None,
    ``brackets`` a ``tiers x 3`` array (:func:`mlrisk.backtest.futures.brackets_array`) or None.
    All None stay None (the compiled spot path); otherwise a None becomes the empty array that selects
    its fallback. Raises ``ValueError`` on a wrong shape."""
    if mark is None and funding is None and brackets is None:
        return None, None, None
    mk = np.empty((0, N_MARK_FIELDS)) if mark is None else _ensure_float(mark)
    fd = np.empty(0) if funding is None else _ensure_float(funding)
    br = np.empty((0, N_BRACKET_FIELDS)) if brackets is None else _ensure_float(brackets)
    if mk.ndim != 2 or mk.shape[1] != N_MARK_FIELDS or mk.shape[0] not in (0, n):
        raise ValueError(f"mark prices: expected {n} rows of (open, high, low), got shape {mk.shape}")
    if fd.ndim != 1 or fd.shape[0] not in (0, n) or not np.isfinite(fd).all():
        raise ValueError(f"funding: expected {n} finite rates (one per candle), got shape {fd.shape}")
    if br.ndim != 2 or br.shape[1] != N_BRACKET_FIELDS or (br.shape[0] and (br[0, 0] != 0 or (np.diff(br[:, 0]) <= 0).any())):
        raise ValueError(f"brackets: expected tiers x (floor, mmr, cum), floors ascending from 0, got {br.tolist()}")
    return mk, fd, br


def run(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
        prm: np.ndarray, mark: np.ndarray | None = None, funding: np.ndarray | None = None,
        brackets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One backtest: (equity per close, trade rows). Inputs are float64 arrays of equal length;
    ``mark``, ``funding``, ``brackets`` as for :func:`market_arrays` (None: the fallbacks)."""
    arrays = [_ensure_float(a) for a in (open_, high, low, close, p_up)]
    n = len(arrays[0])
    equity = np.empty(n)
    trades = np.empty((n + 1, N_TRADE_FIELDS))
    prm = _ensure_float(prm)
    ntr = run_kernel(*arrays, *market_arrays(n, mark, funding, brackets), lots_for(prm), prm, equity, trades)
    return equity, trades[:ntr].copy()


def sweep(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, p_up: np.ndarray,
          prms: np.ndarray, mark: np.ndarray | None = None, funding: np.ndarray | None = None,
          brackets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Many backtests in parallel: (equity matrix combos x candles, summary matrix combos x N_SUMMARY)."""
    arrays = [_ensure_float(a) for a in (open_, high, low, close, p_up)]
    n = len(arrays[0])
    prms = np.ascontiguousarray(np.atleast_2d(prms), dtype=np.float64)
    equities = np.empty((prms.shape[0], n))
    summaries = np.empty((prms.shape[0], N_SUMMARY))
    sweep_kernel(*arrays, *market_arrays(n, mark, funding, brackets), lots_for(prms), prms, equities, summaries)
    return equities, summaries
