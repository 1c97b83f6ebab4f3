"""The strategy's rules: P(up) at a close -> the orders to send (:func:`decide`,
:func:`order_intents`), each entry's margin at its fill (:func:`entry_size`), a position's
take-profit, stop and liquidation prices (:func:`protective_levels`, :func:`liquidation_price`, with
the maintenance tier of :func:`maintenance_bracket`), the timed exit (:func:`hold_exit_due`) and the
close-checked exit (:func:`exit_at_close`). The backtest
engine and the live bot's brokers (simulated or real exchange) call these same functions, so no rule
is written twice and live trading cannot drift from the backtest.

Compiled with numba (``njit``) so the engine can call them in its loop; they are ordinary
callables from Python too. Prices in quote currency, rates as fractions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def signal(p_up: float, threshold: float) -> int:
    """+1 (long) if ``p_up >= 0.5 + threshold``, -1 (short) if ``p_up <= 0.5 - threshold``, else 0.
    A NaN probability (no prediction) is no signal. Long wins the tie at threshold 0, p = 0.5."""
    if math.isnan(p_up):
        return 0
    if p_up >= 0.5 + threshold:
        return 1
    if p_up <= 0.5 - threshold:
        return -1
    return 0


@njit(cache=True)
def decide(p_up: float, threshold: float, position_side: int, position_entries: int,
           pending_side: int, pending_entries: int, pyramid_max: int, direction: int = 0) -> tuple[int, bool, bool, bool]:
    """Orders for the close of one candle.

    Arguments: the probability of up; the threshold (fraction, e.g. 0.08); the open position's side
    (+1/-1/0) and its number of filled entries; the side (+1/-1/0) and number of resting entry
    orders; ``pyramid_max``; ``direction``: 0 both sides, +1 long only, -1 short only (a signal
    for the other side then only closes the position and cancels resting orders).

    Returns ``(signal, close_position, cancel_pending, add_entry)``:
    - ``close_position``: the open position is on the other side: close it (at the next open).
    - ``cancel_pending``: resting entry orders are on the other side: cancel them.
    - ``add_entry``: place one entry on the signal's side, because that side holds fewer than
      ``pyramid_max`` entries, filled plus pending.
    """
    s = signal(p_up, threshold)
    if s == 0:
        return 0, False, False, False
    close_position = position_side == -s
    cancel_pending = pending_side == -s and pending_entries > 0
    same = 0
    if position_side == s:
        same += position_entries
    if pending_side == s:
        same += pending_entries
    allowed = direction == 0 or direction == s
    return s, close_position, cancel_pending, allowed and same < pyramid_max


ENTRY_MARKET, ENTRY_LIMIT = 0, 1


@njit(cache=True)
def order_intents(p_up: float, close: float, threshold: float, position_side: int, position_entries: int,
                  pending_side: int, pending_entries: int, pyramid_max: int, direction: int, limit_entry: bool,
                  limit_offset: float) -> tuple[bool, bool, int, int, float]:
    """What to send at the close of one candle: the simulator and a real-exchange broker both act
    on exactly this, so no order rule is written twice.

    Arguments as for :func:`decide`, plus the candle's ``close``, ``limit_entry`` (entries rest as
    limit orders, else market orders) and ``limit_offset`` (fraction).

    Returns ``(close_position, cancel_pending, entry_side, entry_kind, entry_price)``:
    - ``close_position``: close the whole open position with a market order (next open).
    - ``cancel_pending``: cancel every resting entry order.
    - ``entry_side``: +1/-1: place one entry on that side; 0: none.
    - ``entry_kind``: :data:`ENTRY_MARKET` (fills at the next open) or :data:`ENTRY_LIMIT`
      (rests at ``entry_price = close * (1 - side * limit_offset)``; 0.0 for a market order).
    The entry's margin is decided at its fill by :func:`entry_size`; its protective levels by
    :func:`protective_levels` and :func:`liquidation_price` once the position exists.
    """
    s, close_position, cancel_pending, add = decide(p_up, threshold, position_side, position_entries,
                                                    pending_side, pending_entries, pyramid_max, direction)
    if not add:
        return close_position, cancel_pending, 0, ENTRY_MARKET, 0.0
    if limit_entry:
        return close_position, cancel_pending, s, ENTRY_LIMIT, close * (1.0 - s * limit_offset)
    return close_position, cancel_pending, s, ENTRY_MARKET, 0.0


@njit(cache=True)
def entry_size(free_balance: float, order_size: float, leverage: float, min_notional: float) -> tuple[float, float]:
    """The margin rule of one entry at its fill: margin ``order_size * free_balance`` (free balance =
    equity marked at the fill price minus margin in use, quote currency), notional ``margin * leverage``.
    Returns ``(margin, notional)``; ``(0.0, 0.0)`` when the entry is skipped (no free balance, or a
    notional below ``min_notional``)."""
    margin = order_size * free_balance
    notional = margin * leverage
    if not (margin > 0.0 and notional >= min_notional and notional > 0.0):
        return 0.0, 0.0
    return margin, notional


@njit(cache=True)
def protective_levels(side: int, avg_price: float, take_profit: float, stop_loss: float) -> tuple[float, float]:
    """Take-profit and stop prices of a position on ``side`` (+1/-1) with average entry price
    ``avg_price``; ``take_profit``/``stop_loss`` are fractions of it. Returns ``(take_profit_price,
    stop_price)``, each 0.0 when its fraction is 0 (no such exit)."""
    tp_px = 0.0
    sl_px = 0.0
    if side == 1:
        if take_profit > 0.0:
            tp_px = avg_price * (1.0 + take_profit)
        if stop_loss > 0.0:
            sl_px = avg_price * (1.0 - stop_loss)
    else:
        if take_profit > 0.0:
            tp_px = avg_price * (1.0 - take_profit)
        if stop_loss > 0.0:
            sl_px = avg_price * (1.0 + stop_loss)
    return tp_px, sl_px


@njit(cache=True)
def liquidation_price(side: int, qty: float, avg: float, margin: float, mmr: float, cum: float = 0.0) -> float:
    """Isolated-margin liquidation price of a position of ``qty`` units at average price ``avg``
    with ``margin`` (quote currency, the isolated wallet balance), maintenance margin rate ``mmr``
    (fraction) and maintenance amount ``cum`` (quote currency; the bracket's ``cum``, 0 with a flat
    rate). Binance's isolated formula for one position, ``LP = (WB + cum - side*Q*EP) / (Q*MMR - side*Q)``:
    ``(Q*P - M - cum) / (Q*(1 - mmr))`` for a long (0 when it cannot be liquidated),
    ``(Q*P + M + cum) / (Q*(1 + mmr))`` for a short. The maintenance margin at price ``x`` is
    ``Q*x*mmr - cum``; the position is liquidated where margin plus unrealised P&L falls to it."""
    if side == 1:
        return max((qty * avg - margin - cum) / (qty * (1.0 - mmr)), 0.0)
    return (qty * avg + margin + cum) / (qty * (1.0 + mmr))


# columns of a leverage-bracket table (one row per tier, ascending notionalFloor; see maintenance_bracket)
(BR_FLOOR, BR_MMR, BR_CUM) = range(3)
N_BRACKET_FIELDS = 3


@njit(cache=True)
def maintenance_bracket(notional: float, brackets: np.ndarray, mmr: float) -> tuple[float, float]:
    """The maintenance margin rate and amount ``(mmr, cum)`` of a position of ``notional`` (quote
    currency): the last row of ``brackets`` (rows of :data:`BR_FLOOR`, :data:`BR_MMR`, :data:`BR_CUM`,
    ascending ``notionalFloor``, as Binance's ``/fapi/v1/leverageBracket``) whose floor is ``<= notional``
    (Binance's tier holds ``notionalFloor <= notional < notionalCap``). With no rows: the flat ``mmr``
    and ``cum`` 0 (the constant ``maintenance_margin_rate``)."""
    nb = brackets.shape[0]
    if nb == 0:
        return mmr, 0.0
    j = 0
    for r in range(1, nb):
        if brackets[r, BR_FLOOR] <= notional:
            j = r
        else:
            break
    return brackets[j, BR_MMR], brackets[j, BR_CUM]


@njit(cache=True)
def exit_at_close(side: int, avg_price: float, close: float, take_profit: float, stop_loss: float) -> int:
    """The close-checked exit (``exit_check: close``) of a position: -1 stop-loss, +1 take-profit,
    0 none. The stop is checked first: ``side * (close - avg) <= -stop_loss * avg``, then
    ``side * (close - avg) >= take_profit * avg`` (fractions; 0 = no such exit)."""
    if stop_loss > 0.0 and side * (close - avg_price) <= -stop_loss * avg_price:
        return -1
    if take_profit > 0.0 and side * (close - avg_price) >= take_profit * avg_price:
        return 1
    return 0


@njit(cache=True)
def hold_exit_due(t: int, first_candle: int, hold: int) -> bool:
    """The timed exit: a position whose first entry filled at the open of candle ``first_candle`` is
    closed at the open of candle ``t`` once ``hold`` candles have passed (``t - first_candle >= hold``;
    ``hold`` 0 = never). Candle numbers count from any fixed origin."""
    return hold > 0 and t - first_candle >= hold
