"""Binance's symbol filters, applied before an order is sent, exactly (``decimal.Decimal``).

Reads an ``exchangeInfo`` symbol entry (spot ``/api/v3/exchangeInfo`` or USDT-M futures
``/fapi/v1/exchangeInfo``) and applies the filters Binance documents
(https://github.com/binance/binance-spot-api-docs/blob/master/filters.md):

- ``PRICE_FILTER``: ``minPrice <= price <= maxPrice`` and ``price % tickSize == 0`` (each part
  disabled when 0). A limit price is rounded to the tick in the trader's favour: a BUY rounds
  down (never pays more than asked), a SELL rounds up (never receives less than asked).
- ``LOT_SIZE`` (every order) and ``MARKET_LOT_SIZE`` (MARKET orders; often all zeros = disabled):
  ``minQty <= quantity <= maxQty`` and ``quantity % stepSize == 0``. Quantities are truncated
  (rounded down) to the step, like ccxt's and freqtrade's ``amount_to_precision``: an order is
  never bigger than decided.
- ``MIN_NOTIONAL`` (``minNotional``, ``applyToMarket``; futures: ``notional``) and ``NOTIONAL``
  (``minNotional``/``maxNotional`` with ``applyMinToMarket``/``applyMaxToMarket``):
  ``price * quantity`` within bounds; for a MARKET order ``price`` is a reference price the caller
  gives (Binance uses a recent average; the last close is a fair stand-in).

An order that breaks a bound after rounding is refused with :class:`OrderFilterError`, one line
naming the filter, the values and the limit; nothing is clamped up to a minimum, because that would
trade more than the strategy decided. Prices and quantities are in the symbol's quote and base
asset units (BTCUSDT: USDT per BTC, BTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from math import gcd
from typing import Any, Literal

from mlrisk.errors import ExchangeError

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT", "LIMIT_MAKER"]
ZERO = Decimal(0)


class OrderFilterError(ExchangeError):
    """The order breaks one of the symbol's exchange filters (the message names which)."""


def to_decimal(x: Decimal | str | int | float) -> Decimal:
    """``x`` as an exact Decimal; a float goes through its shortest repr (``0.1`` -> ``Decimal('0.1')``).
    Raises ``ValueError`` for NaN, infinity or text that is not a number."""
    try:
        d = x if isinstance(x, Decimal) else Decimal(repr(x) if isinstance(x, float) else str(x))
    except InvalidOperation:
        raise ValueError(f"{x!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{x!r} is not a finite number")
    return d


def floor_to(x: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` that is <= ``x`` (``x`` itself when ``step`` is 0)."""
    return x if step == 0 else (x / step).to_integral_value(ROUND_FLOOR) * step


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


@dataclass(frozen=True)
class PreparedOrder:
    """An order that passes the filters: exact values and the strings to send."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None

    def params(self) -> dict[str, str]:
        """``symbol``, ``side``, ``type``, ``quantity`` and (limit orders) ``price``, as Binance strings."""
        out = {"symbol": self.symbol, "side": self.side, "type": self.type, "quantity": fmt(self.quantity)}
        if self.price is not None:
            out["price"] = fmt(self.price)
        return out


def prepare_order(filters: SymbolFilters, side: Side, order_type: OrderType, quantity: Decimal | str | int | float,
                  price: Decimal | str | int | float | None = None,
                  reference_price: Decimal | str | int | float | None = None) -> PreparedOrder:
    """Round ``quantity`` down to the step and a limit ``price`` to the tick (BUY down, SELL up), then
    check every bound. ``reference_price`` (MARKET orders): the price used for the notional check.
    Raises :class:`OrderFilterError` (one line) when the order cannot be sent as decided."""
    f, sym = filters, filters.symbol
    if side not in ("BUY", "SELL"):
        raise OrderFilterError(f"{sym}: side {side!r} must be BUY or SELL")
    if order_type not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
        raise OrderFilterError(f"{sym}: order type {order_type!r} must be MARKET, LIMIT or LIMIT_MAKER")
    market = order_type == "MARKET"
    try:
        q_in = to_decimal(quantity)
        p_in = None if price is None else to_decimal(price)
        ref = None if reference_price is None else to_decimal(reference_price)
    except ValueError as e:
        raise OrderFilterError(f"{sym}: {e}") from None
    if q_in <= 0:
        raise OrderFilterError(f"{sym}: quantity {fmt(q_in)} must be positive")

    p: Decimal | None = None
    if not market:
        if p_in is None or p_in <= 0:
            raise OrderFilterError(f"{sym}: a {order_type} order needs a positive price")
        p = f.round_price(p_in, side)
        if f.min_price and p < f.min_price:
            raise OrderFilterError(f"{sym}: price {fmt(p)} is below PRICE_FILTER minPrice {fmt(f.min_price)}")
        if f.max_price and p > f.max_price:
            raise OrderFilterError(f"{sym}: price {fmt(p)} is above PRICE_FILTER maxPrice {fmt(f.max_price)}")
    elif p_in is not None:
        raise OrderFilterError(f"{sym}: a MARKET order takes no price (give reference_price for the notional check)")

    q = f.round_quantity(q_in, market)
    lots = [("LOT_SIZE", f.min_qty, f.max_qty)] + ([("MARKET_LOT_SIZE", f.market_min_qty, f.market_max_qty)] if market else [])
    for name, lo, hi in lots:
        if q <= 0 or (lo and q < lo):
            raise OrderFilterError(f"{sym}: quantity {fmt(q_in)} rounds down to {fmt(q)} (step {fmt(f.quantity_step(market))}), "
                                   f"below {name} minQty {fmt(lo)}")
        if hi and q > hi:
            raise OrderFilterError(f"{sym}: quantity {fmt(q)} is above {name} maxQty {fmt(hi)}")

    check_min = f.min_notional > 0 and (not market or f.min_notional_market)
    check_max = f.max_notional > 0 and (not market or f.max_notional_market)
    if check_min or check_max:
        at = p if p is not None else ref
        if at is None or at <= 0:
            raise OrderFilterError(f"{sym}: a MARKET order needs a positive reference_price to check the notional filter")
        notional = q * at
        if check_min and notional < f.min_notional:
            raise OrderFilterError(f"{sym}: notional {fmt(q)} x {fmt(at)} = {fmt(notional)} is below the minimum "
                                   f"notional {fmt(f.min_notional)}")
        if check_max and notional > f.max_notional:
            raise OrderFilterError(f"{sym}: notional {fmt(q)} x {fmt(at)} = {fmt(notional)} is above the maximum "
                                   f"notional {fmt(f.max_notional)}")
    return PreparedOrder(sym, side, order_type, q, p)


def symbol_filters(exchange_info: Mapping[str, Any], symbol: str) -> SymbolFilters:
    """The filters of ``symbol`` in a whole exchangeInfo response; :class:`ExchangeError` if absent."""
    for entry in exchange_info.get("symbols", []):
        if entry.get("symbol") == symbol:
            return SymbolFilters.from_exchange_info(entry)
    raise ExchangeError(f"symbol {symbol} is not in the exchange's exchangeInfo: check MLRISK_SYMBOL and the market")
