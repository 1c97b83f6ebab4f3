"""Binance's symbol filters, applied before an order is sent, exactly (``decimal.Decimal``; the
filters' data and the rounding rule are in :mod:`mlrisk.exchange_filters`, shared with the backtest).

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

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from mlrisk.errors import ExchangeError
from mlrisk.exchange_filters import (ZERO, Side, SymbolFilters, ceil_to, floor_to, fmt, symbol_filters,  # noqa: F401
                                     to_decimal)

OrderType = Literal["MARKET", "LIMIT", "LIMIT_MAKER"]


class OrderFilterError(ExchangeError):
    """The order breaks one of the symbol's exchange filters (the message names which)."""


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
