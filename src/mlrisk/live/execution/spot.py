"""The spot broker (:class:`ExchangeBroker`): the step's orders made real on a spot exchange, through
the write-ahead send, settlement and reconciliation of :class:`mlrisk.live.execution.base.BrokerBase`
(see that module). Long only, leverage 1, market entries (checked by
:func:`mlrisk.live.risk.check_supported`). Quantities are ``Decimal`` base asset; prices quote asset.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from mlrisk.errors import SettingsError
from mlrisk.live.client_ids import is_ours, make_client_order_id
from mlrisk.live.execution.base import BrokerBase
from mlrisk.live.filters import OrderFilterError, fmt, prepare_order
from mlrisk.live.risk import position_cap_breach
from mlrisk.live.state import Fill, NewOrder, OrderRecord, OrderStatus, Position, now_ms
from mlrisk.live.venue import Balances, FillReport, OrderReport, SpotVenue
from mlrisk.strategy import entry_size

S = OrderStatus


class ExchangeBroker(BrokerBase):
    """Orders for one symbol on a spot exchange, through one signed
    :class:`~mlrisk.exchange.ExchangeClient` (``exchange``) and the bot's ``store``.
    ``sleep`` is injectable for tests."""

    # ------------------------------------------------------------------------------ balances
    VENUE = SpotVenue

    _balances: Balances | None = None   # the last read, valid until the next order is sent or the next close
    _agreed: tuple[Any, ...] | None = None  # (the state file's revision, allOrders' resume point) when the trades last explained it
    _read_from: tuple[int | None, int | None] = (None, None)

    def balances(self, fresh: bool = True) -> Balances:
        """``{asset: (free, locked)}``; ``fresh=False``: the last read when no order was sent since
        (within one close)."""
        if fresh or self._balances is None:
            self._balances = self.venue.balances()
        return self._balances

    def send(self, cid: str) -> OrderRecord:
        try:
            return super().send(cid)
        finally:
            self._balances = None  # an order may have moved them

    def equity(self, price: float) -> float:
        """The account's value in the quote asset at ``price``: quote plus base holdings (free and
        locked), what the loss limits measure in the exchange modes."""
        b = self.balances()
        zero = (Decimal(0), Decimal(0))
        quote, base = sum(b.get(self.filters.quote_asset, zero)), sum(b.get(self.filters.base_asset, zero))
        return float(quote) + float(base) * price

    # ------------------------------------------------------------------------------- prepare
    def prepare(self, orders: Iterable[dict[str, Any]], close: float, open_ms: int,
                state: Any = None) -> tuple[list[NewOrder], list[str]]:
        """The exchange orders for the step's ``orders`` (dicts of :class:`~mlrisk.live.step.CandleResult`)
        decided at ``close`` of the candle opening at ``open_ms`` (``state``: the step's
        :class:`~mlrisk.live.step.BotState` after the candle; unused on spot). Returns (orders, reasons
        for orders that could not be made, e.g. below the exchange's minimum)."""
        if self.resettle_unknown():
            self._balances = None
        self.check_position(fresh=False, if_changed=True)  # every close: an unrecorded holding halts now, not at the next restart
        out: list[NewOrder] = []
        skipped: list[str] = []
        held = self.store.position(self.symbol).quantity
        for o in orders:
            if o["type"] != "MARKET":
                raise SettingsError(f"{o['type']} orders are not sent yet (backtest.entry market only)")
            try:
                if o["leg"] in ("exit", "flat"):
                    if held <= 0:
                        continue
                    p = prepare_order(self.filters, "SELL", "MARKET", held, reference_price=close)
                    held = Decimal(0)
                else:
                    free = self.balances(fresh=False).get(self.filters.quote_asset, (Decimal(0), Decimal(0)))[0]
                    _, notional = entry_size(float(free), self.order_size, 1.0, self.min_notional)
                    if notional <= 0:
                        skipped.append(f"entry skipped: free {self.filters.quote_asset} {free} too small")
                        continue
                    after = float(held) * close + notional
                    breach = position_cap_breach(after, self.max_position_notional, self.filters.quote_asset)
                    if breach:
                        skipped.append(breach)
                        continue
                    p = prepare_order(self.filters, "BUY", "MARKET", Decimal(str(notional)) / Decimal(str(close)),
                                      reference_price=close)
            except OrderFilterError as e:
                skipped.append(f"{o['leg']} skipped: {e}")
                continue
            cid = make_client_order_id(self.prefix, self.symbol, open_ms, o["leg"])
            out.append(NewOrder(cid, self.symbol, p.side, "MARKET", p.quantity, open_ms, o["leg"],
                                reduce_only=o["leg"] != "entry"))
        return out, skipped

    # -------------------------------------------------------------------------------- record
    def _record(self, o: OrderRecord, r: OrderReport) -> OrderRecord:
        """Record an exchange report (create or query): the status, the order's own executed quantity
        and quote (the position moves by the executed quantity at once, even while its trades lag) and
        the trades known so far (a BUY's base-asset fee leaves the position when its trade is
        recorded; the rest come with :meth:`complete_fills`)."""
        if o.status is S.FILLED:
            return o
        fills = r.fills
        if fills is None and (r.executed_qty or 0) > 0:  # a query: the trades come from myTrades (may lag)
            fills = tuple(self.venue.trades(r.exchange_order_id))
        recs = [Fill(o.client_order_id, f.trade_id, f.price, f.qty, f.commission, f.commission_asset, r.update_time_ms)
                for f in fills or ()]
        known = {f.trade_id for f in self.store.fills(o.client_order_id)}
        executed = r.executed_qty if r.executed_qty is not None else o.executed_qty + sum(
            (f.qty for f in recs if f.trade_id not in known), Decimal(0))
        pos = self.store.position(o.symbol)
        moved = max(executed - o.executed_qty, Decimal(0))
        qty = pos.quantity + (moved if o.side == "BUY" else -moved) - self._base_fees(o, recs, known)
        new_pos = Position(o.symbol, qty, pos.entry_price) if qty != pos.quantity else None
        return self.store.transition(o.client_order_id, r.status, exchange_order_id=r.exchange_order_id,
                                     executed_qty=executed, cumulative_quote=r.cumulative_quote,
                                     reason=r.reason or None, fills=recs, position=new_pos)

    def _base_fees(self, o: OrderRecord, recs: Iterable[Fill], known: set[int]) -> Decimal:
        """The base-asset fees of a BUY's new trades (they leave the position)."""
        if o.side != "BUY":
            return Decimal(0)
        return sum((f.commission for f in recs if f.trade_id not in known and f.commission_asset == self.filters.base_asset),
                   Decimal(0))

    def _order_trades(self, o: OrderRecord) -> list[FillReport]:
        return self.venue.trades(o.exchange_order_id)

    def _after_late_fills(self, o: OrderRecord, recs: list[Fill], known: set[int]) -> Position | None:
        """The position loses a BUY's base-asset fee when its trades are added."""
        fee = self._base_fees(o, recs, known)
        pos = self.store.position(o.symbol)
        return Position(o.symbol, pos.quantity - fee, pos.entry_price) if fee else None

    # ------------------------------------------------------------------------------ settle
    def holding(self) -> Decimal:
        """The base asset the account holds (free + locked): what an executed order moves."""
        return sum(self.balances().get(self.filters.base_asset, (Decimal(0), Decimal(0))), Decimal(0))

    def balance_snapshot(self) -> Decimal:
        """:meth:`holding` just before a send (the read of this close when no order was sent since)."""
        return sum(self.balances(fresh=False).get(self.filters.base_asset, (Decimal(0), Decimal(0))), Decimal(0))

    # ------------------------------------------------------------------------------ reconcile
    def exchange_position(self) -> Decimal:
        """The bot's position as the exchange's own records explain it: its orders' trades (BUY qty
        less base-asset commission, minus SELL qty), read page by page since the state file's first
        order (allOrders from its exchange id or write-ahead time; myTrades from the first recorded
        trade id, or the first trade of the first order with an executed quantity); a state file
        without orders: the latest page of each."""
        first_order, first_trade, first_ms = self.store.first_exchange_ids()
        since = None if first_order or first_ms is None else first_ms - 60_000
        orders = self.venue.all_orders(from_order_id=first_order, since_ms=since)  # neither: the latest page
        self._read_from = self._resume_point(orders, (first_order, since))
        ours = {o.exchange_order_id for o in orders if is_ours(o.client_order_id, self.prefix)}
        if first_trade is None:
            started = [o for o in orders if o.exchange_order_id in ours and (o.executed_qty or 0) > 0]
            ids = [t.trade_id for t in self.venue.trades(started[0].exchange_order_id)] if started else []
            first_trade = min(ids) if ids else None
        qty = Decimal(0)
        for t in self.venue.trades(from_trade_id=first_trade):  # None: the latest page
            if t.order_id not in ours:
                continue
            fee = t.commission if t.commission_asset == self.filters.base_asset else Decimal(0)
            qty += t.qty - fee if t.is_buyer else -t.qty
        return qty

    def _position_gap(self) -> str | None:
        recorded = self.store.position(self.symbol).quantity
        explained = self.exchange_position()
        base = self.filters.base_asset
        if explained != recorded:
            return (f"position mismatch: the state file records {fmt(recorded)} {base} but the exchange's trades of "
                    f"this bot's orders give {fmt(explained)} {base}")
        return self._holding_gap()

    def _holding_gap(self) -> str | None:
        """The account holds less of the base asset (free + locked) than the recorded position."""
        recorded = self.store.position(self.symbol).quantity
        free, locked = self.balances(fresh=False).get(self.filters.base_asset, (Decimal(0), Decimal(0)))
        if free + locked < recorded:
            return (f"position mismatch: the state file records {fmt(recorded)} {self.filters.base_asset} but the account "
                    f"holds only {fmt(free + locked)} {self.filters.base_asset} (sold outside the bot?)")
        return None

    def _resume_point(self, orders: list[OrderReport], start: tuple[int | None, int | None]) -> tuple[int | None, int | None]:
        """Where a later read of allOrders must start to see every order that can change what this read saw:
        after the newest order that changed more than :attr:`bound_ms` (+ a minute for the clocks) before
        now, but no later than the oldest order (by id) still open or changed since; else at ``start``
        (from order id, since ms UTC) again. Below it no order can appear later: order ids grow with
        creation, so an order with a smaller id than one this read saw settled more than the bound ago was
        created before it and was visible to this read (allOrders trails the matching engine by at most the
        bound). And none there can change: each is final (filled, cancelled, expired, rejected). An order
        still open can fill later (e.g. a resting LIMIT with the bot's prefix placed outside the bot): the
        resume point stays at it while it is open."""
        cutoff = now_ms() + self.exchange.offset_ms - self.bound_ms - 60_000  # the exchange's clock
        read = [o for o in orders if o.exchange_order_id is not None]
        old = [o.exchange_order_id for o in read if o.update_time_ms < cutoff]
        if not old:
            return start
        live = [o.exchange_order_id for o in read if not o.status.final or o.update_time_ms >= cutoff]
        return (min([max(old) + 1, *live]), None)

    def _unchanged_since_agreed(self) -> bool:
        """Nothing moved since the exchange's trades last explained the position: in the state file no
        order written, sent, settled or filled (by any process writing the file), none open or in
        doubt, no trades missing; at the exchange (one allOrders read from :meth:`_resume_point`) no
        order with the bot's prefix that the state file does not know."""
        if self._agreed is None or self._agreed[0] != self.store.revision(self.symbol):
            return False
        if self.store.orders_to_reconcile() or self.store.orders_missing_fills():
            return False
        from_id, since = self._agreed[1]
        return not any(is_ours(o.client_order_id, self.prefix) and self.store.order(o.client_order_id) is None
                       for o in self.venue.all_orders(from_order_id=from_id, since_ms=since))

    def check_position(self, fresh: bool = True, if_changed: bool = False) -> None:
        """Halt (:class:`~mlrisk.live.execution.base.PositionMismatch`) when the exchange's records do not
        explain the recorded position. While the records may still lag (an order changed within
        :attr:`bound_ms`, or trades still missing) it reads them again until the bound first.
        ``fresh=False``: the first look uses this close's balance read (the equity's).
        ``if_changed`` (every close): when nothing moved since the exchange's trades last explained the
        position (:meth:`_unchanged_since_agreed`: the state file, and one allOrders read of the
        orders since then), only the balances (this close's read) are checked besides: the trades of
        the bot's orders change only when its orders do. Otherwise, or on a gap, the full check."""
        if fresh:
            self._balances = None
        if if_changed and self._unchanged_since_agreed() and self._holding_gap() is None:
            return

        def agrees() -> bool | None:
            ok = True if not self.complete_fills() and self._position_gap() is None else None
            if ok:
                self._agreed = (self.store.revision(self.symbol), self._read_from)
            self._balances = None  # a second look reads the balances again
            return ok

        if agrees() is None and self.poll(max((o.updated_ms for o in self.store.orders()), default=0), agrees) is None:
            self._halt(self._position_gap() or self._missing_line() or "position mismatch")

    def _missing_line(self) -> str | None:
        lag = self.store.orders_missing_fills()
        if not lag:
            return None
        return (f"order {lag[0].client_order_id}: executed {fmt(lag[0].executed_qty)} but its trades are not at the "
                f"exchange {self.bound_ms} ms after it changed; check its trades (myTrades)")
