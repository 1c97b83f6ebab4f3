"""The exact rounding rule shared by the backtest and the live bot (:mod:`mlrisk.exchange_filters`):
the compiled ``floor_qty`` floors a float quantity exactly as the live bot's Decimal ``floor_to`` of
``to_decimal(qty)`` does, above all just below a multiple of the step."""

from __future__ import annotations

import os
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrisk.exchange_filters import floor_qty, floor_to, to_decimal

EXAMPLES = int(os.environ.get("MLRISK_HYPOTHESIS_EXAMPLES", "150"))
# Binance's stepSize values (spot and USDT-M futures), and two steps that are no power of ten
STEPS = ["1", "10", "100", "0.1", "0.01", "0.001", "0.0001", "0.00001", "0.000001", "0.0000001", "0.00000001",
         "0.5", "0.0025"]


def live(qty: float, step: str) -> float:
    """The live bot's rounding (live/filters.py -> SymbolFilters.round_quantity): Decimal floor_to."""
    return float(floor_to(to_decimal(qty), Decimal(step)))


def test_a_quantity_just_below_a_multiple_floors_under_it_as_the_live_bot_does():
    # 0.29999999999999 is 1e-14 under 0.3: the live bot sends 0.299; a tolerance that rounds it up to 0.3
    # buys more than the live bot would
    assert live(0.29999999999999, "0.001") == 0.299
    assert floor_qty(0.29999999999999, 0.001) == 0.299
    assert floor_qty(np.nextafter(5.0, 0.0), 1.0) == live(float(np.nextafter(5.0, 0.0)), "1") == 4.0
    # the float of a decimal multiple itself stays that multiple (0.3 / 0.1 is 2.9999999999999996 in floats)
    assert floor_qty(0.3, 0.1) == live(0.3, "0.1") == 0.3


@st.composite
def near_multiples(draw: st.DrawFn) -> tuple[float, str]:
    """A step and a quantity: anywhere, or within a few float steps of a multiple of the step."""
    step = draw(st.sampled_from(STEPS))
    if draw(st.booleans()):
        return draw(st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False)), step
    m = draw(st.integers(0, 10**7))
    q = float(Decimal(m) * Decimal(step))
    for _ in range(draw(st.integers(-3, 3)) % 7):
        q = float(np.nextafter(q, -np.inf if draw(st.booleans()) else np.inf))
    return max(q, 0.0), step


@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(near_multiples())
def test_floor_qty_agrees_with_the_decimal_floor(case):
    q, step = case
    assert floor_qty(q, float(step)) == live(q, step), (q, step)


def test_to_decimal_reads_numpys_floats_as_their_shortest_text():
    import pytest

    # numpy 2's repr(np.float64(0.1)) is "np.float64(0.1)", which Decimal refused
    assert to_decimal(np.float64(0.1)) == Decimal("0.1") == to_decimal(0.1)
    assert to_decimal(np.float64(2.675)) == Decimal("2.675")
    assert to_decimal(np.float32(0.1)) == Decimal("0.1")       # float32's own shortest text, not 0.100000001490116
    assert to_decimal(np.float32(1e20)) == Decimal("1e20")
    assert to_decimal(np.int64(7)) == Decimal(7)
    assert floor_to(to_decimal(np.float64(0.29999999999999)), Decimal("0.001")) == Decimal("0.299")
    for bad in (np.float64("nan"), np.float64("inf"), np.float32("nan"), np.float32("-inf")):
        with pytest.raises(ValueError, match="is not a finite number"):
            to_decimal(bad)
