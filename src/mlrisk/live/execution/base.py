"""The exchange brokers' common part and the spot broker: the paper step's orders made real, safely.

Per candle the bot's pure step (:func:`mlrisk.live.step.paper_step`, the backtest's own per-candle
step) decides the orders at the close; this module turns them into exchange orders:

1. **prepare**: an exit sells the recorded position; an entry buys ``entry_size(free quote balance,
   order_size, leverage 1, min_notional)`` worth at the close (the backtest's sizing on the real
   balance), unless the position would then exceed ``max_position_notional``; both through the exchange filters (:func:`mlrisk.live.filters.prepare_order`); each gets
   its deterministic client order id (symbol, candle open time, leg);
2. the bot **writes them ahead** in the same transaction as the candle's state
   (:meth:`~mlrisk.live.state.StateStore.commit_candle`), then
3. **sends** each with ``idempotent=False``: an answer records the order, its fills (with fees) and
   the position; a refusal marks it rejected; an unknown outcome (timeout, 5xx, lost response) marks
   it ``unknown`` and it is **queried by client id before anything else**: found, it is recorded;
   absent (asked again once ``recv_window_ms`` has passed, after which the lost request can no longer
   execute), it goes back to pending and is sent again under the same id. Never resent blindly.

:meth:`ExchangeBroker.reconcile` runs at start: every recorded order that may be in flight
(pending, unknown, open) is queried by client id and settled (a pending order of the last processed
candle is sent; an older one is cancelled as stale, never sent late); open orders at the exchange
with the bot's prefix that the state file does not know are adopted; then the bot's position as the
exchange's own trade history explains it must equal the recorded one, and the account must hold it.
Anything else halts trading with one line (fail closed).

Steps 2-3 and the reconciliation are :class:`BrokerBase` (this module), shared with the spot broker
(:class:`mlrisk.live.execution.spot.ExchangeBroker`) and the USDT-M futures broker
(:class:`mlrisk.live.execution.futures.FuturesBroker`). Supported
strategies (checked by :func:`mlrisk.live.risk.check_supported`): spot, long only, leverage 1, market entries, no
take-profit/stop/hold (the engine would exit its simulated position inside a candle where no real
order exists); futures, see that module. Quantities are ``Decimal`` base asset; prices quote asset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from mlrisk.errors import ExchangeError
from mlrisk.live.client_ids import is_ours, parse_client_order_id
from mlrisk.live.execution.stream import StreamUpdates
from mlrisk.live.filters import SymbolFilters
from mlrisk.live.state import NewOrder, OrderRecord, OrderStatus, StateError, StateStore
from mlrisk.live.venue import OrderReport, SpotVenue

S = OrderStatus


class PositionMismatch(StateError):
    """The exchange and the state file disagree about the position: trading halts."""


class BrokerBase(StreamUpdates):
    """What every exchange broker shares: the write-ahead send, the unknown-outcome settlement by
    client id, and reconciliation at start (see the module docstring). It talks to the exchange only
    through its venue (``VENUE``, :mod:`mlrisk.live.venue`: place, query, open orders, as normalised
    reports); a subclass says how to record a report (:meth:`_record`) and how to check the position
    (:meth:`check_position`). ``exchange``: the signed :class:`~mlrisk.exchange.ExchangeClient`.
    The user data stream's updates: :class:`~mlrisk.live.execution.stream.StreamUpdates`
    (``apply_update``, ``stream_reconcile``, ``last_stream_update(client_id)``).
    ``sleep`` is injectable for tests."""

    VENUE: Any = SpotVenue

    def __init__(self, exchange: Any, store: StateStore, symbol: str, prefix: str, order_size: float,
                 min_notional: float, *, max_position_notional: float = 0.0, recv_window_ms: int = 5000,
                 sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.exchange, self.store, self.symbol, self.prefix = exchange, store, symbol, prefix
        self.venue = self.VENUE(exchange, symbol)
        self.order_size, self.min_notional = order_size, min_notional
        self.max_position_notional = max_position_notional  # quote currency; 0 = no cap
        self.recv_window_ms = recv_window_ms
        self.sleep = sleep or time.sleep
        self.filters: SymbolFilters = self.venue.exchange_filters()

    # --------------------------------------------------------------------- market specifics
    def _record(self, o: OrderRecord, r: OrderReport) -> OrderRecord:
        raise NotImplementedError

    def _adopt(self) -> list[str]:
        """Open orders at the exchange with the bot's prefix that the state file does not know:
        recorded as the bot's. Returns one line per adopted order."""
        done: list[str] = []
        for x in self.venue.open_orders():
            cid = x.client_order_id
            if is_ours(cid, self.prefix) and self.store.order(cid) is None:
                c = parse_client_order_id(cid)
                qty = x.quantity or abs(self.store.position(self.symbol).quantity) or self.filters.step_size or Decimal(1)
                rec = self.store.insert_order(NewOrder(cid, self.symbol, x.side, x.type, qty,  # type: ignore[arg-type]
                                                       c.open_time_ms, c.leg, price=x.price, reduce_only=x.reduce_only))
                self._record(rec, x)
                done.append(f"{cid}: adopted ({x.raw_status})")
        return done

    def check_position(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- send
    def send(self, cid: str) -> OrderRecord:
        """Send a recorded pending order; settle an unknown outcome by querying (see the module docstring)."""
        from mlrisk.exchange import ExchangeOutcomeUnknown

        o = self.store.order(cid)
        assert o is not None
        if o.status is not S.PENDING_SUBMIT:
            return o
        try:
            r = self.venue.place(o)
        except ExchangeOutcomeUnknown as e:
            self.store.transition(cid, S.UNKNOWN, reason=str(e)[:200])
            return self.settle(cid, resend=True)
        except ExchangeError as e:
            return self.store.transition(cid, S.REJECTED, reason=str(e)[:200])
        return self._record(o, r)

    def settle(self, cid: str, resend: bool) -> OrderRecord:
        """Query an order by client id and record the answer. Absent: asked again after
        ``recv_window_ms``; still absent, the order goes back to pending and (``resend``) is sent again
        under the same id, else (a stale decision) it is cancelled without being sent."""
        o = self.store.order(cid)
        assert o is not None
        q = self.venue.query(o)
        if q is None:
            self.sleep(self.recv_window_ms / 1000)  # a request still in flight expires on the exchange by then
            q = self.venue.query(o)
        if q is not None:
            return self._record(o, q)
        if o.status is S.UNKNOWN:
            o = self.store.transition(cid, S.PENDING_SUBMIT, reason="not at the exchange: may be sent again")
        if resend:
            return self.send(cid)
        return self.store.transition(cid, S.CANCELLED, reason="stale: decided for an earlier candle, never sent")

    def send_all(self, orders: Iterable[NewOrder]) -> list[OrderRecord]:
        return [self.send(o.client_order_id) for o in orders]

    # ------------------------------------------------------------------------------ reconcile
    def reconcile(self) -> list[str]:
        """Settle every order that may be in flight, adopt unknown orders with the bot's prefix, then
        check the position (see the module docstring). Returns what it did, one line each; raises
        :class:`PositionMismatch` when the position cannot be explained."""
        done: list[str] = []
        last = self.store.last_processed_candle()
        for o in self.store.orders_to_reconcile():
            rec = self.settle(o.client_order_id, resend=o.candle_open_ms == last)
            done.append(f"{o.client_order_id}: {o.status.value} -> {rec.status.value}")
        done += self._adopt()
        self.check_position()
        return done

    def _halt(self, reason: str) -> None:
        self.store.halt(reason)
        raise PositionMismatch(reason + ": trading halted; settle it by hand, then start with --reset-halt")
