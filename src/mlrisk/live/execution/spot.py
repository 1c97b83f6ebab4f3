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
from mlrisk.live.state import Fill, NewOrder, OrderRecord, OrderStatus, Position
from mlrisk.live.venue import Balances, OrderReport, SpotVenue
from mlrisk.strategy import entry_size

S = OrderStatus


class ExchangeBroker(BrokerBase):
    """Orders for one symbol on a spot exchange, through one signed
    :class:`~mlrisk.exchange.ExchangeClient` (``exchange``) and the bot's ``store``.
    ``sleep`` is injectable for tests."""

    # ------------------------------------------------------------------------------ balances
    VENUE = SpotVenue

    def balances(self) -> Balances:
        """``{asset: (free, locked)}``."""
        return self.venue.balances()

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
                    free = self.balances().get(self.filters.quote_asset, (Decimal(0), Decimal(0)))[0]
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
        """Record an exchange report (create or query) with its fills and the resulting position."""
        if o.status is S.FILLED:
            return o
        fills = r.fills
        if fills is None and (r.executed_qty or 0) > 0:  # a query: the trades come from myTrades
            fills = tuple(self.venue.trades(r.exchange_order_id))
        recs = [Fill(o.client_order_id, f.trade_id, f.price, f.qty, f.commission, f.commission_asset, r.update_time_ms)
                for f in fills or ()]
        known = {f.trade_id for f in self.store.fills(o.client_order_id)}
        pos = self.store.position(o.symbol)
        qty = pos.quantity
        for f in recs:
            if f.trade_id in known:
                continue
            net = f.qty - (f.commission if f.commission_asset == self.filters.base_asset else 0)
            qty += net if o.side == "BUY" else -f.qty
        new_pos = Position(o.symbol, qty, pos.entry_price) if qty != pos.quantity else None
        return self.store.transition(o.client_order_id, r.status, exchange_order_id=r.exchange_order_id,
                                     executed_qty=r.executed_qty, cumulative_quote=r.cumulative_quote,
                                     fills=recs, position=new_pos)

    # ------------------------------------------------------------------------------ reconcile
    def exchange_position(self) -> Decimal:
        """The bot's position as the exchange's own records explain it: its orders' trades (BUY qty
        less base-asset commission, minus SELL qty)."""
        qty = Decimal(0)
        ours = {o.exchange_order_id for o in self.venue.all_orders() if is_ours(o.client_order_id, self.prefix)}
        for t in self.venue.trades():
            if t.order_id not in ours:
                continue
            fee = t.commission if t.commission_asset == self.filters.base_asset else Decimal(0)
            qty += t.qty - fee if t.is_buyer else -t.qty
        return qty

    def check_position(self) -> None:
        recorded = self.store.position(self.symbol).quantity
        explained = self.exchange_position()
        free, locked = self.balances().get(self.filters.base_asset, (Decimal(0), Decimal(0)))
        base = self.filters.base_asset
        if explained != recorded:
            reason = (f"position mismatch: the state file records {fmt(recorded)} {base} but the exchange's trades of "
                      f"this bot's orders give {fmt(explained)} {base}")
        elif free + locked < recorded:
            reason = (f"position mismatch: the state file records {fmt(recorded)} {base} but the account holds only "
                      f"{fmt(free + locked)} {base} (sold outside the bot?)")
        else:
            return
        self._halt(reason)
