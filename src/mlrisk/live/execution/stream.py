"""The user data stream's updates applied by execution between closes (:class:`StreamUpdates`, a
part of every exchange broker): the stream is the first source of fills and triggers, REST the
backstop (the refresh at each close) and the repair after a gap (:meth:`StreamUpdates.stream_reconcile`).

* An order update of one of the bot's orders is recorded like a query's answer (status, executed
  quantity, cumulative quote) with the update's trade as its fill (idempotent on the trade id); when
  the fills recorded so far and this one do not add up to the executed quantity (an update was
  missed), the order's trades are read by REST instead.
* A futures algo (take-profit/stop) update that ends the order or names its triggered order makes
  execution query the algo order by client id (REST) and record it through its triggered order's
  trades, at once; an update of that triggered order does the same.
* A liquidation (an order the exchange sends itself, ``autoclose-``/``adl_autoclose``) is recorded
  as an order of its own (leg ``liquidation``, the exchange's client id) with its fills and the
  position they leave; when it closes the position, entries halt with the reason ``liquidated``.
* Position and balance updates change nothing: the position follows the recorded fills and is
  checked against the exchange at each close; the last update per client id is kept for the
  settlement of unknown outcomes (:meth:`StreamUpdates.last_stream_update`).

Quantities ``Decimal`` base asset, prices quote asset, times epoch ms UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from mlrisk.live.filters import fmt
from mlrisk.live.state import Fill, NewOrder, OrderRecord, OrderStatus, Position, StateError, StateStore, now_ms
from mlrisk.live.venue import AlgoUpdate, FillReport, OrderReport, OrderUpdate, Update

S = OrderStatus
ZERO = Decimal(0)
#: what :meth:`StreamUpdates.apply_update` returns: (journal event kind, message), kinds ``stream``
#: (an order recorded), ``liquidated`` (the position closed by the exchange; entries halted)
Note = tuple[str, str]


class _Memory:
    """The stream's last update per client id and the futures triggered-order ids of algo orders."""

    def __init__(self) -> None:
        self.last: dict[str, OrderUpdate | AlgoUpdate] = {}
        self.actual: dict[int, str] = {}
        self.drain: Callable[[], Any] | None = None   # the running stream's drain (set by the app)
        self.draining = False


class StreamUpdates:
    """The user data stream's side of a broker (see the module docstring); mixed into
    :class:`~mlrisk.live.execution.base.BrokerBase`, whose ``store``, ``symbol``, ``venue``,
    ``_record`` and ``check_position`` it uses. Runs on the loop's thread only."""

    store: StateStore
    symbol: str
    venue: Any

    def _record(self, o: OrderRecord, r: OrderReport) -> OrderRecord:  # pragma: no cover - the broker's
        raise NotImplementedError

    def check_position(self) -> None:  # pragma: no cover - the broker's
        raise NotImplementedError

    @property
    def _stream(self) -> _Memory:
        m = self.__dict__.get("_stream_memory")
        if m is None:
            m = self.__dict__["_stream_memory"] = _Memory()
        return m

    def follow_stream(self, drain: Callable[[], Any] | None) -> None:
        """Let the settlement of unknown outcomes apply the stream's pending updates first (``drain``:
        :meth:`~mlrisk.live.user_stream.StreamPump.drain`; None: the stream is off)."""
        self._stream.drain = drain

    def stream_report(self, cid: str) -> OrderReport | None:
        """The order's last update from the user data stream as the report a query would give, after
        applying the stream's pending updates; None when none came (or the stream is off): the REST
        records settle it then."""
        m = self._stream
        if m.drain is not None and not m.draining:
            m.draining = True
            try:
                m.drain()
            finally:
                m.draining = False
        u = m.last.get(cid)
        o = self.store.order(cid)
        return self._report(o, u) if isinstance(u, OrderUpdate) and o is not None else None

    def last_stream_update(self, client_order_id: str) -> OrderUpdate | AlgoUpdate | None:
        """The last stream update of an order (or algo order) by client id, None when none came."""
        return self._stream.last.get(client_order_id)

    # ------------------------------------------------------------------------------ updates
    def apply_update(self, update: Update) -> list[Note]:
        """Record one normalised stream update (see the module docstring); returns what it did."""
        if getattr(update, "symbol", self.symbol) != self.symbol:
            return []
        if isinstance(update, OrderUpdate):
            if update.liquidation:
                return self._liquidation(update)
            o = self.store.order(update.client_order_id)
            if o is None:
                owner = self._stream.actual.get(update.exchange_order_id)
                return self._requery(owner, f"its triggered order {update.exchange_status}") if owner else []
            self._stream.last[o.client_order_id] = update
            if o.status.final:
                return []
            return self._note(o, self._record(o, self._report(o, update)), update.exchange_status)
        if isinstance(update, AlgoUpdate):
            o = self.store.order(update.client_algo_id)
            if o is None:
                return []
            self._stream.last[o.client_order_id] = update
            if update.actual_order_id is not None:
                self._stream.actual[update.actual_order_id] = o.client_order_id
            if o.status.final or (update.status is S.OPEN and update.actual_order_id is None):
                return []   # placed, or triggering without an order yet: nothing to record
            return self._requery(o.client_order_id, f"algo {update.algo_status}")
        return []           # positions and balances: checked at each close

    def stream_reconcile(self) -> list[str]:
        """After a gap in the stream: query every open or unknown order of the bot by client id and
        record the answers, then check the position (a mismatch halts, as at a close, without
        raising here). Returns one line per change."""
        lines = []
        for o in self.store.orders([S.OPEN, S.UNKNOWN]):
            if o.symbol != self.symbol:
                continue
            q = self.venue.query(o)
            if q is not None:
                rec = self._record(o, q)
                if rec.status is not o.status or rec.executed_qty != o.executed_qty:
                    lines.append(f"{o.client_order_id}: {o.status.value} -> {rec.status.value} (REST)")
        try:
            self.check_position()
        except StateError as e:  # PositionMismatch: the store is halted already
            lines.append(f"halted: {e}")
        return lines

    # ------------------------------------------------------------------------------ helpers
    def _report(self, o: OrderRecord, u: OrderUpdate) -> OrderReport:
        """An order update as the report a query would give; ``fills`` only when they complete the
        executed quantity with the fills already recorded (else None: the broker reads the trades)."""
        known = {f.trade_id: f.qty for f in self.store.fills(o.client_order_id)}
        done = sum(known.values(), ZERO)
        fills: tuple[FillReport, ...] | None = None
        if u.fill is not None:
            f = u.fill
            if done + (ZERO if f.trade_id in known else f.qty) == u.executed_qty:
                fills = (f,)
        elif done == u.executed_qty:
            fills = ()
        return OrderReport(o.client_order_id, u.exchange_order_id, u.status, u.exchange_status, u.executed_qty,
                           u.cumulative_quote, u.event_ms, trade_order_id=u.exchange_order_id, fills=fills)

    def _requery(self, cid: str, why: str) -> list[Note]:
        o = self.store.order(cid)
        if o is None or o.status.final:
            return []
        q = self.venue.query(o)
        return [] if q is None else self._note(o, self._record(o, q), why)

    @staticmethod
    def _note(before: OrderRecord, after: OrderRecord, why: str) -> list[Note]:
        if (after.status, after.executed_qty) == (before.status, before.executed_qty):
            return []
        return [("stream", f"{after.client_order_id}: {before.status.value} -> {after.status.value}, executed "
                           f"{fmt(after.executed_qty)} ({why})")]

    def _liquidation(self, u: OrderUpdate) -> list[Note]:
        """Record the exchange's own order that liquidated (or deleveraged) the position."""
        cid = u.client_order_id
        pos = self.store.position(self.symbol)
        o = self.store.order(cid)
        new = None
        if o is None:
            qty = abs(pos.quantity) or u.executed_qty
            if pos.quantity == 0 or qty <= 0:
                return []   # nothing of ours to liquidate (the close's check decides)
            new = NewOrder(cid, self.symbol, "SELL" if pos.quantity > 0 else "BUY", "LIQUIDATION", qty,
                           self.store.last_processed_candle() or 0, "liquidation", reduce_only=True)
            o = OrderRecord(**vars(new), created_ms=now_ms())   # written with its outcome, in one transaction
        self._stream.last[cid] = u
        if o.status.final:
            return []
        recs: list[Fill] = []
        new_pos = None
        known = {f.trade_id for f in self.store.fills(cid)}
        if u.fill is not None and u.fill.trade_id not in known:
            f = u.fill
            recs.append(Fill(cid, f.trade_id, f.price, f.qty, f.commission, f.commission_asset, f.time_ms))
            qty = pos.quantity + (f.qty if o.side == "BUY" else -f.qty)
            new_pos = Position(self.symbol, qty, pos.entry_price if qty else None)
        halt = None
        if new_pos is not None and new_pos.quantity == 0 and pos.quantity != 0:
            halt = (f"liquidated: the exchange closed the {self.symbol} position of {fmt(pos.quantity)} with order "
                    f"{cid} at {fmt(recs[0].price)}; entries halted (check the margin, then --reset-halt)")
        # one transaction: the order (when new), its trade, the position it leaves and the halt
        self.store.transition(cid, u.status, exchange_order_id=u.exchange_order_id, executed_qty=u.executed_qty,
                              cumulative_quote=u.cumulative_quote, fills=recs, position=new_pos,
                              reason="sent by the exchange: liquidation", insert=new, halt_reason=halt)
        notes: list[Note] = []
        if recs:
            notes.append(("stream", f"{cid}: liquidation fill {fmt(recs[0].qty)} at {fmt(recs[0].price)}"))
        if halt is not None:
            notes.append(("liquidated", halt))
        return notes
