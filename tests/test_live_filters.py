"""Exchange filters with Binance's BTCUSDT values: exact rounding, direction-aware prices, refusals."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_exchange import BTCUSDT_FUTURES, BTCUSDT_SPOT, symbol_entry
from mlrisk.errors import ExchangeError
from mlrisk.live.filters import (OrderFilterError, SymbolFilters, ceil_to, floor_to, fmt, prepare_order,
                                 symbol_filters)

SPOT = SymbolFilters.from_exchange_info(BTCUSDT_SPOT)
FUT = SymbolFilters.from_exchange_info(BTCUSDT_FUTURES)


def test_parse_spot_and_futures_entries():
    assert (SPOT.tick_size, SPOT.min_price, SPOT.max_price) == (D("0.01"), D("0.01"), D("1000000"))
    assert (SPOT.step_size, SPOT.min_qty, SPOT.max_qty) == (D("0.00001"), D("0.00001"), D("9000"))
    assert (SPOT.market_step_size, SPOT.market_max_qty) == (0, D("76.79277158"))
    assert (SPOT.min_notional, SPOT.min_notional_market, SPOT.max_notional, SPOT.max_notional_market) == \
        (D(5), True, D(9_000_000), False)
    assert (SPOT.base_asset, SPOT.quote_asset) == ("BTC", "USDT")
    assert (FUT.tick_size, FUT.step_size, FUT.market_step_size, FUT.min_notional) == (D("0.1"), D("0.001"), D("0.001"), D(100))
    legacy = symbol_entry(filters=[*BTCUSDT_SPOT["filters"][:2],
                                   {"filterType": "MIN_NOTIONAL", "minNotional": "10", "applyToMarket": False}])
    lf = SymbolFilters.from_exchange_info(legacy)
    assert (lf.min_notional, lf.min_notional_market, lf.max_notional) == (D(10), False, 0)


def test_whole_exchange_info_lookup_and_bad_entries():
    info = {"symbols": [symbol_entry(symbol="ETHUSDT"), BTCUSDT_SPOT]}
    assert symbol_filters(info, "BTCUSDT") == SPOT
    with pytest.raises(ExchangeError, match="BNBUSDT is not in the exchange's exchangeInfo"):
        symbol_filters(info, "BNBUSDT")
    with pytest.raises(ExchangeError, match="no LOT_SIZE filter"):
        SymbolFilters.from_exchange_info(symbol_entry(filters=BTCUSDT_SPOT["filters"][:1]))
    bad = symbol_entry(filters=[{"filterType": "PRICE_FILTER", "tickSize": "abc"}, BTCUSDT_SPOT["filters"][1]])
    with pytest.raises(ExchangeError, match="malformed filter value"):
        SymbolFilters.from_exchange_info(bad)


def test_limit_prices_round_in_the_traders_favour():
    assert SPOT.round_price("43210.1234", "BUY") == D("43210.12")
    assert SPOT.round_price("43210.1234", "SELL") == D("43210.13")
    assert SPOT.round_price("43210.12", "SELL") == D("43210.12")   # on the grid: unchanged
    assert FUT.round_price(43210.17, "BUY") == D("43210.1") and FUT.round_price(43210.11, "SELL") == D("43210.2")
    o = prepare_order(SPOT, "BUY", "LIMIT", "0.0012345678", price=43210.129)
    assert o.params() == {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.00123", "price": "43210.12"}
    o = prepare_order(SPOT, "SELL", "LIMIT", D("0.5"), price="60000.001")
    assert o.params()["price"] == "60000.01" and o.params()["quantity"] == "0.5"


def test_quantities_truncate_and_floats_are_exact():
    assert SPOT.round_quantity(0.1 + 0.2) == D("0.3")               # 0.30000000000000004 -> 0.3, not 0.29999
    assert SPOT.round_quantity("0.123456789") == D("0.12345")
    assert FUT.round_quantity(1.9999) == D("1.999")
    assert fmt(D("1E+2")) == "100" and fmt(D("0.00100000")) == "0.001" and fmt(D("0E-8")) == "0"
    o = prepare_order(SPOT, "BUY", "MARKET", 0.00017, reference_price=43000)
    assert o.params() == {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.00017"} and o.price is None


@pytest.mark.parametrize("args, kwargs, reason", [
    (("BUY", "MARKET", "0.000009"), {"reference_price": 40000}, "rounds down to 0 (step 0.00001), below LOT_SIZE minQty 0.00001"),
    (("BUY", "LIMIT", "0.0001"), {"price": 40000}, "notional 0.0001 x 40000 = 4 is below the minimum notional 5"),
    (("SELL", "MARKET", "0.0001"), {"reference_price": 40000}, "below the minimum notional 5"),
    (("BUY", "MARKET", "100"), {"reference_price": 40000}, "quantity 100 is above MARKET_LOT_SIZE maxQty 76.79277158"),
    (("BUY", "LIMIT", "9000.5"), {"price": 1}, "above LOT_SIZE maxQty 9000"),
    (("BUY", "LIMIT", "8000"), {"price": 2000}, "above the maximum notional 9000000"),
    (("BUY", "LIMIT", "1"), {"price": "0.004"}, "price 0 is below PRICE_FILTER minPrice 0.01"),
    (("SELL", "LIMIT", "0.001"), {"price": "1000000.001"}, "above PRICE_FILTER maxPrice 1000000"),
    (("BUY", "MARKET", "0.001"), {}, "needs a positive reference_price"),
    (("BUY", "MARKET", "0.001"), {"price": 1}, "takes no price"),
    (("BUY", "LIMIT", "0.001"), {}, "needs a positive price"),
    (("BUY", "LIMIT", "-1"), {"price": 1}, "must be positive"),
    (("BUY", "LIMIT", "nan"), {"price": 1}, "not a finite number"),
    (("HOLD", "LIMIT", "1"), {"price": 1}, "must be BUY or SELL"),
    (("BUY", "STOP", "1"), {"price": 1}, "order type"),
])
def test_orders_breaking_a_filter_are_refused_in_one_line(args, kwargs, reason):
    with pytest.raises(OrderFilterError) as e:
        prepare_order(SPOT, *args, **kwargs)
    assert reason in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("BTCUSDT: ")


def test_notional_rules_follow_the_apply_to_market_flags():
    assert prepare_order(SPOT, "BUY", "LIMIT", "0.00013", price=40000).quantity == D("0.00013")   # 5.2 >= 5
    no_market_min = SymbolFilters.from_exchange_info(symbol_entry(filters=[*BTCUSDT_SPOT["filters"][:2],
        {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": False, "maxNotional": "10", "applyMaxToMarket": True}]))
    assert prepare_order(no_market_min, "BUY", "MARKET", "0.00001", reference_price=40000).quantity == D("0.00001")
    with pytest.raises(OrderFilterError, match="above the maximum notional 10"):
        prepare_order(no_market_min, "BUY", "MARKET", "0.001", reference_price=40000)
    with pytest.raises(OrderFilterError, match="minimum notional 100"):   # futures: 0.002 x 43000 = 86
        prepare_order(FUT, "SELL", "MARKET", "0.0025", reference_price=43000)


def test_market_orders_obey_both_lot_steps():
    f = SymbolFilters("X", step_size=D("0.01"), market_step_size=D("0.015"))
    assert f.quantity_step(market=True) == D("0.03") and f.quantity_step(market=False) == D("0.01")
    assert prepare_order(f, "BUY", "MARKET", "0.1").quantity == D("0.09")
    assert prepare_order(f, "BUY", "LIMIT", "0.1", price=1).quantity == D("0.1")


prices = st.decimals(min_value=D("0.01"), max_value=D("999999"), places=6, allow_nan=False)
qtys = st.decimals(min_value=D("0.0002"), max_value=D("70"), places=9, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(prices, qtys, st.sampled_from(["BUY", "SELL"]))
def test_prepared_limit_orders_are_on_the_grid_and_never_worse(price, qty, side):
    q = floor_to(qty, D("0.00001"))                                     # computed here independently
    p = floor_to(price, D("0.01")) if side == "BUY" else ceil_to(price, D("0.01"))
    if not 5 <= q * p <= 9_000_000:
        with pytest.raises(OrderFilterError, match="notional"):
            prepare_order(SPOT, side, "LIMIT", qty, price=price)
        return
    o = prepare_order(SPOT, side, "LIMIT", qty, price=price)
    assert (o.quantity, o.price) == (q, p)
    assert o.price % SPOT.tick_size == 0 and o.quantity % SPOT.step_size == 0
    assert 0 <= qty - o.quantity < SPOT.step_size
    if side == "BUY":
        assert 0 <= price - o.price < SPOT.tick_size
    else:
        assert 0 <= o.price - price < SPOT.tick_size
    assert D(o.params()["price"]) == o.price and D(o.params()["quantity"]) == o.quantity
    assert "E" not in o.params()["price"] + o.params()["quantity"]


@given(st.decimals(min_value=-1000, max_value=1000, places=5), st.sampled_from([D("0.01"), D("0.5"), D("10"), D("0.00001")]))
def test_floor_and_ceil(x, step):
    lo, hi = floor_to(x, step), ceil_to(x, step)
    assert lo % step == 0 and hi % step == 0 and lo <= x <= hi and hi - lo in (0, step)
