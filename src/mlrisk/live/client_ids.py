"""Deterministic client order ids: one id per (prefix, symbol, candle, leg), parseable back.

An id is ``{prefix}-{SYMBOL}-{open time in base 36}-{leg}``, e.g. ``mlr-BTCUSDT-loyw3v28-entry``
for the ``entry`` leg decided at the candle opening at 1,700,000,000,000 ms (UTC). It uses only
``[A-Za-z0-9-]``, which both Binance spot (``^[a-zA-Z0-9-_]{1,36}$``) and USDT-M futures
(``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``) accept, and is at most 36 characters. (``:`` and ``/`` would
also break python-binance's signature: it signs the raw value, but sends it percent-encoded.)

Because the id is a pure function of the decision, a restarted bot recomputes the same id for the
same candle and leg, and can ask the exchange about it (``origClientOrderId``) before sending
anything again. Binance refuses a second *open* order with the same id ("Duplicate order sent."),
but accepts the id again once the first order is filled or cancelled: the id alone does not
prevent a duplicate, the write-ahead record in :mod:`mlrisk.live.state` plus a query does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LEN = 36
_PREFIX = r"[A-Za-z0-9]{1,8}"
_SYMBOL = r"[A-Z0-9]{2,20}"
_TIME = r"0|[1-9a-z][0-9a-z]*"          # canonical base 36: lower case, no leading zero
_LEG = r"[a-z0-9]{1,6}"
_ID = re.compile(rf"^(?P<prefix>{_PREFIX})-(?P<symbol>{_SYMBOL})-(?P<time>{_TIME})-(?P<leg>{_LEG})$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


@dataclass(frozen=True)
class ClientOrderId:
    """The parts of a client order id. ``open_time_ms``: the deciding candle's open time, epoch
    milliseconds UTC; ``leg``: which order of that decision (e.g. ``entry``, ``exit``, ``tp``, ``sl``,
    ``flat``; 1-6 lower-case letters or digits)."""

    prefix: str
    symbol: str
    open_time_ms: int
    leg: str

    def __str__(self) -> str:
        return make_client_order_id(self.prefix, self.symbol, self.open_time_ms, self.leg)


def make_client_order_id(prefix: str, symbol: str, open_time_ms: int, leg: str) -> str:
    """The id for (prefix, symbol, candle open time in ms, leg). Raises ``ValueError`` naming the
    part that is malformed, or the parts to shorten when the id would exceed 36 characters."""
    if not re.fullmatch(_PREFIX, prefix):
        raise ValueError(f"client id prefix {prefix!r} must be 1-8 letters or digits")
    if not re.fullmatch(_SYMBOL, symbol):
        raise ValueError(f"symbol {symbol!r} must be 2-20 upper-case letters or digits")
    if isinstance(open_time_ms, bool) or not isinstance(open_time_ms, int) or open_time_ms < 0:
        raise ValueError(f"candle open time {open_time_ms!r} must be a non-negative int of epoch ms")
    if not re.fullmatch(_LEG, leg):
        raise ValueError(f"order leg {leg!r} must be 1-6 lower-case letters or digits")
    cid = f"{prefix}-{symbol}-{_base36(open_time_ms)}-{leg}"
    if len(cid) > MAX_LEN:
        raise ValueError(f"client order id {cid!r} has {len(cid)} characters, Binance allows {MAX_LEN}: "
                         "use a shorter client id prefix or leg name")
    return cid


def parse_client_order_id(cid: str) -> ClientOrderId:
    """The parts of an id made by :func:`make_client_order_id`; ``ValueError`` for any other string
    (e.g. python-binance's random ``x-HNA2TXFJ...`` ids, or an id typed by hand)."""
    m = _ID.match(cid) if len(cid) <= MAX_LEN else None
    if m is None:
        raise ValueError(f"{cid!r} is not an mlrisk client order id")
    return ClientOrderId(m["prefix"], m["symbol"], int(m["time"], 36), m["leg"])


def is_ours(cid: str, prefix: str) -> bool:
    """True when ``cid`` is a well-formed id with this bot's ``prefix`` (for adopting orders at start)."""
    try:
        return parse_client_order_id(cid).prefix == prefix
    except ValueError:
        return False
