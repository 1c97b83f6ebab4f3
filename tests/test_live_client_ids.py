"""Client order ids: deterministic, <= 36 characters of Binance's alphabet, unique, parseable."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrisk.live.client_ids import ClientOrderId, is_ours, make_client_order_id, parse_client_order_id

BINANCE_FUTURES = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")   # the issue's / futures' alphabet
BINANCE_SPOT = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")           # spot's, narrower

prefixes = st.from_regex(r"\A[A-Za-z0-9]{1,4}\Z")
symbols = st.from_regex(r"\A[A-Z0-9]{2,14}\Z")
times = st.integers(min_value=0, max_value=4_102_444_800_000)   # up to 2100-01-01
legs = st.from_regex(r"\A[a-z0-9]{1,6}\Z")


def test_example_and_determinism():
    cid = make_client_order_id("mlr", "BTCUSDT", 1_700_000_000_000, "entry")
    assert cid == "mlr-BTCUSDT-loyw3v28-entry"
    assert cid == make_client_order_id("mlr", "BTCUSDT", 1_700_000_000_000, "entry")
    assert int(cid.split("-")[2], 36) == 1_700_000_000_000
    assert parse_client_order_id(cid) == ClientOrderId("mlr", "BTCUSDT", 1_700_000_000_000, "entry")
    assert str(parse_client_order_id(cid)) == cid


@settings(max_examples=300, deadline=None)
@given(prefixes, symbols, times, legs)
def test_roundtrip_alphabet_and_length(prefix, symbol, t, leg):
    cid = make_client_order_id(prefix, symbol, t, leg)
    assert len(cid) <= 36
    assert BINANCE_FUTURES.match(cid) and BINANCE_SPOT.match(cid)
    assert parse_client_order_id(cid) == ClientOrderId(prefix, symbol, t, leg)
    assert is_ours(cid, prefix)
    assert not is_ours(cid, prefix + "x")


@settings(max_examples=300, deadline=None)
@given(symbols, times, legs, symbols, times, legs)
def test_distinct_decisions_get_distinct_ids(s1, t1, l1, s2, t2, l2):
    a = make_client_order_id("mlr", s1, t1, l1)
    b = make_client_order_id("mlr", s2, t2, l2)
    assert (a == b) == ((s1, t1, l1) == (s2, t2, l2))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_accepts_only_canonical_ids(text):
    try:
        parsed = parse_client_order_id(text)
    except ValueError:
        return
    assert str(parsed) == text  # anything accepted is exactly what make_client_order_id writes


@pytest.mark.parametrize("cid", [
    "x-HNA2TXFJ1a2b3c4d5e6f7a8b9c0d1e",      # python-binance's random id
    "mlr-BTCUSDT-0lojzp0w0-entry",          # leading zero: not canonical
    "mlr-BTCUSDT-LOJZP0W0-entry",           # upper-case time
    "mlr-btcusdt-lojzp0w0-entry",           # lower-case symbol
    "mlr-BTCUSDT-lojzp0w0",                 # no leg
    "mlr-BTCUSDT-lojzp0w0-entry-2",         # extra part
])
def test_foreign_ids_are_refused(cid):
    with pytest.raises(ValueError):
        parse_client_order_id(cid)
    assert not is_ours(cid, "mlr")


@pytest.mark.parametrize("args, words", [
    (("my-bot", "BTCUSDT", 0, "entry"), "prefix"),
    (("mlr", "BTC/USDT", 0, "entry"), "symbol"),
    (("mlr", "BTCUSDT", -1, "entry"), "open time"),
    (("mlr", "BTCUSDT", 1.5, "entry"), "open time"),
    (("mlr", "BTCUSDT", 0, "Entry"), "leg"),
    (("mlrisk01", "ABCDEFGHIJKLMNOPQRST", 4_102_444_800_000, "entry"), "shorter client id prefix"),
])
def test_malformed_parts_are_named(args, words):
    with pytest.raises(ValueError, match=words):
        make_client_order_id(*args)
