"""The strategy decision for one candle: P(up) at the close -> orders. The backtest engine and
the live bot call this same function, so live trading cannot drift from the backtest.

Compiled with numba (``njit``) so the engine can call it in its loop; it is an ordinary callable
from Python too.
"""

from __future__ import annotations

import math

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
