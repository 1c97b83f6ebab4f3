"""Binance's symbol filters as data, and the exact rounding rule (``decimal.Decimal``), shared by the
live bot (:mod:`mlrisk.live.filters` checks and prepares orders with them) and the backtest (which
reads the lot step and minimum notional of an exchange-info snapshot through :class:`SymbolFilters`).

- ``PRICE_FILTER``: ``tickSize``, ``minPrice``, ``maxPrice``; ``LOT_SIZE`` and ``MARKET_LOT_SIZE``:
  ``stepSize``, ``minQty``, ``maxQty``; ``MIN_NOTIONAL`` / ``NOTIONAL``: the notional bounds
  (https://github.com/binance/binance-spot-api-docs/blob/master/filters.md). A 0 disables a bound.
- Quantities are truncated (rounded down) to the step (:func:`floor_to`; :func:`floor_qty` for the
  compiled backtest's floats), prices rounded to the
  tick in the trader's favour (:meth:`SymbolFilters.round_price`).

Prices and quantities are in the symbol's quote and base asset units (BTCUSDT: USDT per BTC, BTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from math import gcd
from typing import Any, Literal

from numba import njit

from mlrisk.errors import ExchangeError

Side = Literal["BUY", "SELL"]
ZERO = Decimal(0)


def to_decimal(x: Decimal | str | int | float) -> Decimal:
    """``x`` as an exact Decimal; a float goes through its shortest repr (``0.1`` -> ``Decimal('0.1')``),
    numpy's floats too: ``np.float64`` as a float (numpy 2's repr is ``np.float64(0.1)``, so it is read as
    ``float(x)``), ``np.float32`` through its own shortest text (``str``: ``np.float32(0.1)`` -> ``0.1``).
    Raises ``ValueError`` for NaN, infinity or text that is not a number."""
    try:
        d = x if isinstance(x, Decimal) else Decimal(repr(float(x)) if isinstance(x, float) else str(x))
    except InvalidOperation:
        raise ValueError(f"{x!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{x!r} is not a finite number")
    return d


def floor_to(x: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` that is <= ``x`` (``x`` itself when ``step`` is 0)."""
    return x if step == 0 else (x / step).to_integral_value(ROUND_FLOOR) * step


@njit(cache=True)
def _decimal_step(step: float) -> tuple[float, float]:
    """``(n, whole)`` with ``whole = 10**k`` for the smallest ``k <= 17`` where ``n / whole == step``
    (the step's shortest decimal, as :func:`to_decimal` reads it); ``(0, 0)`` when there is none."""
    whole = 1.0
    for _ in range(18):
        n = math.floor(step * whole + 0.5)
        if n >= 1.0 and n / whole == step:
            return n, whole
        whole *= 10.0
    return 0.0, 0.0


@njit(cache=True)
def floor_qty(qty: float, step: float) -> float:
    """:func:`floor_to` for floats, for the compiled backtest: the largest multiple of ``step`` that is
    <= ``qty`` (base asset units; ``qty`` itself when ``step`` is 0), the same as the live bot's
    ``float(floor_to(to_decimal(qty), to_decimal(step)))`` for every quantity under 2**53 steps.

    The step is its shortest decimal ``n / 10**k`` (every Binance stepSize: ``0.001``, ``1``, ``10``).
    ``to_decimal`` reads ``qty`` as its shortest repr, which is >= the decimal ``m * n / 10**k`` exactly
    when ``qty`` >= that decimal's float ``(m * n) / 10**k`` (a correctly rounded division of two
    exact integers). So the float quotient only starts the search; the multiple ``m`` is then moved
    to the largest whose float is <= ``qty``: no tolerance, so a quantity just below a multiple floors
    to the multiple under it, as the live bot does."""
    if step <= 0.0 or not math.isfinite(qty):
        return qty
    n, whole = _decimal_step(step)
    if n == 0.0:  # a step that is no short decimal: the float rule
        return math.floor(qty / step) * step
    m = math.floor(qty / step)
    while m * n / whole > qty:
        m -= 1.0
    while (m + 1.0) * n / whole <= qty:
        m += 1.0
    return m * n / whole


def ceil_to(x: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of ``step`` that is >= ``x`` (``x`` itself when ``step`` is 0)."""
    return x if step == 0 else (x / step).to_integral_value(ROUND_CEILING) * step


def _lcm(a: Decimal, b: Decimal) -> Decimal:
    """The least common multiple of two decimal steps (0 = disabled)."""
    if a == 0 or b == 0:
        return a or b
    scale = Decimal(10) ** max(-a.as_tuple().exponent, -b.as_tuple().exponent, 0)  # type: ignore[operator]
    ia, ib = int(a * scale), int(b * scale)
    return Decimal(ia * ib // gcd(ia, ib)) / scale


def fmt(x: Decimal) -> str:
    """A Decimal as Binance wants it: plain notation, no exponent, no trailing zeros."""
    s = format(x.normalize(), "f")
    return "0" if s in ("-0", "") else s


@dataclass(frozen=True)
class SymbolFilters:
    """One symbol's trading rules. A 0 disables the bound, as in exchangeInfo."""

    symbol: str
    base_asset: str = ""
    quote_asset: str = ""
    tick_size: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    min_notional_market: bool = True
    max_notional: Decimal = ZERO
    max_notional_market: bool = False

    @classmethod
    def from_exchange_info(cls, entry: Mapping[str, Any]) -> "SymbolFilters":
        """Parse one element of exchangeInfo's ``symbols`` list. Raises :class:`ExchangeError`
        when it has no ``PRICE_FILTER`` or ``LOT_SIZE`` (then it is not a tradable symbol entry)."""
        symbol = str(entry.get("symbol", "?"))
        by_type = {f.get("filterType"): f for f in entry.get("filters", [])}
        missing = [t for t in ("PRICE_FILTER", "LOT_SIZE") if t not in by_type]
        if missing:
            raise ExchangeError(f"exchangeInfo for {symbol} has no {' or '.join(missing)} filter: "
                                "is this a symbols[] entry of /api/v3/exchangeInfo?")
        try:
            pf, lot = by_type["PRICE_FILTER"], by_type["LOT_SIZE"]
            mlot = by_type.get("MARKET_LOT_SIZE", {})
            kw: dict[str, Any] = dict(
                symbol=symbol, base_asset=str(entry.get("baseAsset", "")), quote_asset=str(entry.get("quoteAsset", "")),
                tick_size=to_decimal(pf.get("tickSize", 0)), min_price=to_decimal(pf.get("minPrice", 0)),
                max_price=to_decimal(pf.get("maxPrice", 0)),
                step_size=to_decimal(lot.get("stepSize", 0)), min_qty=to_decimal(lot.get("minQty", 0)),
                max_qty=to_decimal(lot.get("maxQty", 0)),
                market_step_size=to_decimal(mlot.get("stepSize", 0)), market_min_qty=to_decimal(mlot.get("minQty", 0)),
                market_max_qty=to_decimal(mlot.get("maxQty", 0)),
            )
            if "NOTIONAL" in by_type:
                n = by_type["NOTIONAL"]
                kw.update(min_notional=to_decimal(n.get("minNotional", 0)),
                          min_notional_market=bool(n.get("applyMinToMarket", True)),
                          max_notional=to_decimal(n.get("maxNotional", 0)),
                          max_notional_market=bool(n.get("applyMaxToMarket", False)))
            elif "MIN_NOTIONAL" in by_type:
                n = by_type["MIN_NOTIONAL"]  # spot: minNotional/applyToMarket; futures: notional
                kw.update(min_notional=to_decimal(n.get("minNotional", n.get("notional", 0))),
                          min_notional_market=bool(n.get("applyToMarket", True)))
        except ValueError as e:
            raise ExchangeError(f"exchangeInfo for {symbol} has a malformed filter value: {e}") from None
        return cls(**kw)

    def round_price(self, price: Decimal | str | int | float, side: Side) -> Decimal:
        """A limit price on the tick grid: BUY rounds down, SELL rounds up."""
        p = to_decimal(price)
        return floor_to(p, self.tick_size) if side == "BUY" else ceil_to(p, self.tick_size)

    def quantity_step(self, market: bool) -> Decimal:
        """The step a quantity must be a multiple of (MARKET orders obey both lot filters)."""
        return _lcm(self.step_size, self.market_step_size) if market else self.step_size

    def round_quantity(self, quantity: Decimal | str | int | float, market: bool = False) -> Decimal:
        """A quantity truncated (rounded down) to the step."""
        return floor_to(to_decimal(quantity), self.quantity_step(market))


def symbol_filters(exchange_info: Mapping[str, Any], symbol: str) -> SymbolFilters:
    """The filters of ``symbol`` in a whole exchangeInfo response; :class:`ExchangeError` if absent."""
    for entry in exchange_info.get("symbols", []):
        if entry.get("symbol") == symbol:
            return SymbolFilters.from_exchange_info(entry)
    raise ExchangeError(f"symbol {symbol} is not in the exchange's exchangeInfo: check MLRISK_SYMBOL and the market")
