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
   the position; a refusal marks it rejected; an unknown outcome (timeout, 5xx, lost response, and
   what the venue classifies as unknown: Binance's -1006/-1007, HTTP 408) marks it ``unknown`` and it
   is **settled from the exchange's records** (:meth:`BrokerBase.settle`): the user data stream, the
   order query by client id and the order list, polled until ``recv_window_ms + read_lag_ms`` after
   the send. Found, it is recorded; absent with balances unchanged, it is cancelled as not executed;
   balances that moved with no record: entries halt (fail closed). An unknown order is NEVER sent
   again (a filled order frees its client id, so a resend could fill twice).

:meth:`ExchangeBroker.reconcile` runs at start: every recorded order that may be in flight
(pending, unknown, open) is settled the same way, the bound measured from its write-ahead time (a
pending order of the last processed candle absent everywhere at the bound is sent; an older one is
cancelled as stale, never sent late); open orders at the exchange
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
from mlrisk.live.filters import SymbolFilters, fmt
from mlrisk.live.state import Fill, NewOrder, OrderRecord, OrderStatus, Position, StateError, StateStore, now_ms
from mlrisk.live.venue import FillReport, OrderReport, SpotVenue

S = OrderStatus
#: the default allowance (ms) for the exchange's reads lagging its writes, on top of recvWindow (see docs/live.md)
DEFAULT_READ_LAG_MS = 15_000


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
                 read_lag_ms: int = DEFAULT_READ_LAG_MS, sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.exchange, self.store, self.symbol, self.prefix = exchange, store, symbol, prefix
        self.venue = self.VENUE(exchange, symbol)
        self.order_size, self.min_notional = order_size, min_notional
        self.max_position_notional = max_position_notional  # quote currency; 0 = no cap
        self.recv_window_ms = recv_window_ms
        self.venue.set_recv_window(recv_window_ms)  # the window every signed request carries: the bound is real
        self.read_lag_ms = read_lag_ms
        self.sleep = sleep or time.sleep
        self.filters: SymbolFilters = self.venue.exchange_filters()

    @property
    def bound_ms(self) -> int:
        """How long after a request was sent (ms) the exchange's records may still not show it:
        ``recv_window_ms`` (a request not executed within its window never will be) plus
        ``read_lag_ms`` (the allowance for reads that lag writes)."""
        return int(self.recv_window_ms + self.read_lag_ms)

    def poll(self, since_ms: int, probe: Callable[[], Any]) -> Any:
        """``probe()`` until it returns something other than None or ``bound_ms`` has passed since
        ``since_ms`` (ms UTC), waiting 50 ms, 100 ms, ... (at most 2 s) between tries; its last answer."""
        left_s = max(0.0, (since_ms + self.bound_ms - now_ms()) / 1000)
        wait, waited = 0.05, 0.0
        while True:
            got = probe()
            if got is not None or waited >= left_s:
                return got
            step = min(wait, left_s - waited)
            self.sleep(step)
            waited, wait = waited + step, min(wait * 2, 2.0)

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

    def complete_fills(self) -> bool:
        """Add the trades (ids, fees, commission asset) of orders recorded with an executed quantity that
        their recorded trades do not add up to yet (the trade list trailed the order's status), once each
        (idempotent); the position already follows the executed quantity (spot: less a BUY's base-asset
        fee, :meth:`_after_late_fills`). True when some are still missing."""
        missing = False
        for o in self.store.orders_missing_fills():
            if o.exchange_order_id is None or o.symbol != self.symbol:
                missing = True
                continue
            known = {f.trade_id for f in self.store.fills(o.client_order_id)}
            recs = [Fill(o.client_order_id, t.trade_id, t.price, t.qty, t.commission, t.commission_asset, t.time_ms)
                    for t in self._order_trades(o) if t.trade_id not in known]
            if recs:
                self.store.add_fills(o.client_order_id, recs, self._after_late_fills(o, recs, known))
            got = sum((f.qty for f in self.store.fills(o.client_order_id)), Decimal(0))
            missing = missing or got < o.executed_qty
        return missing

    def _order_trades(self, o: OrderRecord) -> list[FillReport]:  # pragma: no cover - the market's
        raise NotImplementedError

    def _after_late_fills(self, o: OrderRecord, recs: list[Fill], known: set[int]) -> Position | None:
        """The position after an order's late trades are added (None: unchanged)."""
        return None

    # ---------------------------------------------------------------------------------- send
    def holding(self) -> Decimal | None:
        """What an executed order of this market moves (spot: the base asset held; futures: the
        position), base asset; None when the market cannot tell."""
        return None

    def balance_snapshot(self) -> Decimal | None:
        """What :meth:`balance_evidence` compares with (taken just before a send)."""
        return self.holding()

    def balance_evidence(self, o: OrderRecord, before: Decimal | None) -> str | None:
        """A line when the account shows that ``o`` executed although no record of it was found: what
        :meth:`holding` says moved by at least half the order's quantity in its direction since
        ``before`` (taken just before the send; None at a restart: compared with the recorded
        position). None when it shows no such change."""
        held = self.holding()
        if held is None:
            return None
        ref = before if before is not None else self.store.position(self.symbol).quantity
        moved = held - ref if o.side == "BUY" else ref - held
        if moved * 2 < o.quantity:
            return None
        base = self.filters.base_asset
        return (f"the account holds {fmt(held)} {base} ({'was' if before is not None else 'recorded'} {fmt(ref)}), "
                f"as if the {o.side} of {fmt(o.quantity)} executed, but no record of the order was found")

    def send(self, cid: str) -> OrderRecord:
        """Send a recorded pending order; settle an unknown outcome (see the module docstring)."""
        from mlrisk.exchange import ExchangeOutcomeUnknown

        o = self.store.order(cid)
        assert o is not None
        if o.status is not S.PENDING_SUBMIT:
            return o
        before = self.balance_snapshot()
        sent = now_ms()
        try:
            r = self.venue.place(o)
        except ExchangeOutcomeUnknown as e:
            self.store.transition(cid, S.UNKNOWN, reason=str(e)[:200])
            return self.settle(cid, resend=False, since_ms=sent, before=before)
        except ExchangeError as e:
            return self.store.transition(cid, S.REJECTED, reason=str(e)[:200])
        return self._record(o, r)

    def find(self, o: OrderRecord, since_ms: int) -> OrderReport | None:
        """The order in any record the exchange offers: the user data stream, the order query by client
        id, the order list since ``since_ms``; None when none shows it (a failed read counts as none)."""
        got = self.stream_report(o.client_order_id)
        if got is not None:
            return got
        listed = getattr(self.venue, "find", None)
        for read in (lambda: self.venue.query(o), lambda: None if listed is None else listed(o, since_ms)):
            try:
                got = read()
            except ExchangeError:
                got = None
            if got is not None:
                return got
        return None

    def settle(self, cid: str, resend: bool, since_ms: int | None = None, before: Any = None) -> OrderRecord:
        """Settle an order that may have reached the exchange (unknown, or pending at a restart) from the
        exchange's records, polled until :attr:`bound_ms` after it was sent (``since_ms``; default: an
        unknown order's last change, a pending order's write-ahead time). Found: recorded. Absent at the
        bound with balances that show no change: an unknown order is cancelled (not executed, NEVER sent
        again: a filled order frees its client id, a resend could fill twice); a pending one is sent
        (``resend``: the last processed candle's decision) or cancelled as stale. Balances that moved
        although no record shows it: fail closed, entries halt with one line naming the client id."""
        o = self.store.order(cid)
        assert o is not None
        since = since_ms if since_ms is not None else (o.created_ms if o.status is S.PENDING_SUBMIT else o.updated_ms)
        q = self.poll(since, lambda: self.find(o, since))
        now = self.store.order(cid)
        if now is not None and now.status.final:  # recorded meanwhile (a stream update applied while polling)
            return now
        if q is not None:
            return self._record(now or o, q)
        evidence = self.balance_evidence(o, before)
        if evidence is not None:
            if o.status is S.PENDING_SUBMIT:
                o = self.store.transition(cid, S.UNKNOWN, reason="pending at a restart: " + evidence[:180])
            line = (f"order {cid}: outcome unknown {self.bound_ms} ms after it was sent: {evidence}; check order {cid} "
                    f"and the balances at the exchange, record it by hand, then start with --reset-halt")
            self.store.halt(line)
            return self.store.order(cid)  # type: ignore[return-value]
        if o.status is S.PENDING_SUBMIT:
            if resend:
                return self.send(cid)
            return self.store.transition(cid, S.CANCELLED, reason="stale: decided for an earlier candle, never sent")
        return self.store.transition(cid, S.CANCELLED, reason=f"not executed: absent from the exchange's records "
                                     f"{self.bound_ms} ms after it was sent, balances unchanged; not sent again")

    def resettle_unknown(self) -> list[OrderRecord]:
        """Look again (once each: their bound has passed) for orders left unknown, e.g. after a fail-closed
        halt: those the exchange's records now show are recorded. Returns them as they are now."""
        return [self.settle(o.client_order_id, resend=False) for o in self.store.orders([S.UNKNOWN])]

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
