"""The USDT-M futures broker: the paper step's orders sent to Binance futures (one-way mode, isolated
margin), with the write-ahead send, the settlement of unknown outcomes by client id and the
reconciliation of :class:`mlrisk.live.execution.base.BrokerBase` (shared with the spot broker).

Per candle, at the close:

1. **refresh**: every open order of the bot is queried by client id, so a resting LIMIT entry that
   filled and a take-profit/stop that triggered since the last close are recorded (fills with their
   USDT commission, the signed position and its average entry price); the recorded position must
   then equal the exchange's (``positionRisk``), else trading halts (a liquidation, which the
   exchange does on its own, or a trade outside the bot: settle by hand). Resting LIMIT entries the
   engine no longer holds (expired after ``limit_ttl``, cancelled by an opposite signal, or filled in
   the simulation) are cancelled by client id.
2. **prepare**: an exit (opposite signal, ``hold``) or ``flatten`` is a reduce-only MARKET order for
   the whole recorded position; an entry is sized like the backtest with
   :func:`mlrisk.strategy.entry_size` on the available USDT balance (plus the position's margin and
   unrealised P&L when an exit of the same close releases it) at the backtest's leverage, as
   ``notional / close`` (a LIMIT entry: ``notional / limit price``, GTC at the step's price) through
   the futures filters, unless the position would exceed ``max_position_notional``. A reversal is an
   exit and an opposite entry of the same close. When the exchange holds a position on a side the
   engine neither holds nor is entering (the simulated and the real account parted, e.g. a real
   stop triggered on a wick the candle's range did not show, or a LIMIT entry filled on one side
   only), a reduce-only MARKET order (leg ``sync``) closes it: the broker never opens a position
   the engine does not hold, and closes one the engine does not hold.
3. **send** (after the candle's write-ahead commit), then **protect**: with ``backtest.take_profit``
   / ``stop_loss`` set, TAKE_PROFIT_MARKET / STOP_MARKET algo orders with ``closePosition=true`` sit
   at :func:`mlrisk.strategy.protective_levels` of the exchange's average entry price
   (``positionRisk``), rounded to the tick; their client ids (``clientAlgoId``) are those of the
   candle that placed them with legs ``tp`` / ``sl``, written ahead like any order. They are
   replaced when the average entry moves (a pyramid add) and cancelled when the position closes, and
   cancelled *before* any reduce-only order is sent (so a reversal's old stop never closes the new
   position). A triggered one is recorded, at the next refresh, as the position's exit (its actual
   order's fills). The engine exits its simulated position on the same levels (intrabar on the
   candle's high/low), so both usually close in the same candle; when they do not, the ``sync`` rule
   above brings the real account back to the engine's side.

:meth:`FuturesBroker.setup` (at start, idempotent): one-way position mode required, margin type
ISOLATED ("already isolated" is success, see :mod:`mlrisk.live.venue`), leverage = ``backtest.leverage``
(a whole number, at most ``MLRISK_MAX_LEVERAGE``). Reconciliation compares the recorded position
with ``positionRisk``'s signed ``positionAmt`` (any difference halts trading, fail closed) and
adopts open orders and algo orders with the bot's prefix. Equity = wallet balance + unrealised P&L
at the close (USDT). Quantities are ``Decimal`` base asset (BTC), prices USDT.

**Funding** (:meth:`FuturesBroker.record_funding`, at a close's equity when a funding time may have become
visible since the last read, and at reconciliation): the funding fees the exchange settled on the symbol since
the last one recorded (``/fapi/v1/income`` FUNDING_FEE, by REST: the user data stream's ``ACCOUNT_UPDATE``
reason FUNDING_FEE is lost while the stream is down, the income history is kept three months and each row has
a transaction id) are recorded in the state file (:meth:`~mlrisk.live.state.StateStore.funding`). The income
is read only at a close where a settlement may be visible that the last read could not see: the symbol
settles on the UTC grid of its funding interval (``/fapi/v1/fundingInfo``, re-read at each income read,
as Binance changes intervals), and a settlement at ``T`` is visible by ``T +``
:data:`~mlrisk.data.derivatives.MAX_JITTER_MS` (Binance's one-minute deviation of the fee's transaction
time) ``+`` the read-lag bound; so each settlement is recorded at the first close after it is visible, and
the closes between two funding times send no request for it. The equity the loss limits measure reads the exchange's
wallet, so it includes every fee settled; the recorded fees say which part of its change funding was.

**Liquidation**: a position the exchange closed itself (on the mark price) is recorded like the user data
stream records it (an order of leg ``liquidation`` with the exchange's ``autoclose-`` client id, its trades
and the position it leaves; entries halt with the reason ``liquidated``); without the stream it is found at
the next close (its equity, before the step, or the position check), when ``positionRisk`` differs from the
recorded position, in ``allOrders``: the recorded position then follows the exchange's instead of halting
as a mismatch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from mlrisk.data.derivatives import MAX_JITTER_MS
from mlrisk.errors import DataError, ExchangeError, SettingsError
from mlrisk.live.client_ids import is_ours, make_client_order_id
from mlrisk.live.execution.base import DEFAULT_READ_LAG_MS, BrokerBase
from mlrisk.live.filters import OrderFilterError, fmt, prepare_order
from mlrisk.live.risk import check_supported, position_cap_breach
from mlrisk.live.state import Fill, Funding, NewOrder, OrderRecord, OrderStatus, Position, StateStore, now_ms
from mlrisk.live.venue import (ALGO_REJECTED_AT_TRIGGER, ALGO_TYPES, FORGOTTEN_AFTER_MS, TRADE_WINDOW_MS, Balances,
                               FuturesVenue, FillReport, OrderRefused, OrderReport, PositionReport)
from mlrisk.strategy import entry_size, protective_levels

S = OrderStatus
ZERO = Decimal(0)
log = logging.getLogger(__name__)


def _sign(d: Decimal) -> int:
    return (d > 0) - (d < 0)


def _family(order_type: str) -> str:
    """The protective leg an algo order type serves: ``sl`` (STOP_MARKET) or ``tp``."""
    return "sl" if order_type == "STOP_MARKET" else "tp"


def liquidated_reason(symbol: str, qty: Decimal, cid: str, price: Decimal | None) -> str:
    """The halt reason of a position the exchange liquidated (``qty``: the position before, signed)."""
    at = f" at {fmt(price)}" if price is not None else ""
    return (f"liquidated: the exchange closed the {symbol} position of {fmt(qty)} with order {cid}{at}; entries halted "
            "(check the margin, then --reset-halt)")


def apply_fill(qty: Decimal, entry: Decimal | None, side: int, fill_qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal | None]:
    """A one-way futures position (signed ``qty``, average ``entry``) after a fill of ``fill_qty`` at
    ``price`` on ``side`` (+1 buy, -1 sell): adding averages the entry price, reducing keeps it, a
    flip starts a new position at ``price``; flat has no entry price."""
    new = qty + side * fill_qty
    if new == 0:
        return new, None
    if qty == 0 or _sign(qty) == side:
        return new, (abs(qty) * (entry or ZERO) + fill_qty * price) / abs(new)
    return new, entry if _sign(new) == _sign(qty) else price


class FuturesBroker(BrokerBase):
    """Orders for one symbol on Binance USDT-M futures (see the module docstring), through one signed
    :class:`~mlrisk.exchange.ExchangeClient` (``market="futures"``) and the bot's ``store``.
    ``backtest``: the pinned :class:`~mlrisk.config.backtest.BacktestParams` (order size, leverage, minimum
    notional, limit TTL, take-profit/stop fractions)."""

    VENUE = FuturesVenue

    def __init__(self, exchange: Any, store: StateStore, symbol: str, prefix: str, backtest: Any, *,
                 max_leverage: float = 1.0, max_position_notional: float = 0.0, recv_window_ms: int = 5000,
                 read_lag_ms: int = DEFAULT_READ_LAG_MS, sleep: Callable[[float], None] | None = None) -> None:
        check_supported(backtest, "futures", max_leverage)
        super().__init__(exchange, store, symbol, prefix, backtest.order_size, backtest.min_notional,
                         max_position_notional=max_position_notional, recv_window_ms=recv_window_ms,
                         read_lag_ms=read_lag_ms, sleep=sleep)
        self.leverage = int(backtest.leverage)
        self.take_profit = float(backtest.take_profit or 0.0)
        self.stop_loss = float(backtest.stop_loss or 0.0)
        self.limit_ttl = int(backtest.limit_ttl)
        self.alerts: list[str] = []   # one line per alert (a protective order rejected at its trigger), in order
        self._funding_read_ms: int | None = None    # the exchange's clock at the start of the last income read
        self._funding_every_ms: int | None = None   # the funding interval read with it (None: unknown, read always)

    # ------------------------------------------------------------------------------ setup
    def setup(self) -> list[str]:
        """One-way mode required; margin type ISOLATED and the leverage set (idempotent: run at every start)."""
        done = []
        if self.venue.hedge_mode():
            raise SettingsError("the futures account is in hedge mode (dualSidePosition): switch it to one-way mode "
                                "(Binance: Futures > Preferences > Position Mode > One-way) and start again")
        try:
            changed = self.venue.set_isolated()
            done.append("margin type ISOLATED" + (" (set)" if changed else " (already)"))
        except ExchangeError as e:  # e.g. it cannot change with a position or open orders
            if not self.venue.is_isolated():
                raise SettingsError(f"cannot set {self.symbol} futures to isolated margin ({e}): close its position and "
                                    "orders, or set isolated margin by hand, then start again") from None
            done.append("margin type ISOLATED (already)")
        done.append(f"leverage {self.venue.set_leverage(self.leverage)}")
        done.append(self._bracket_check())
        return done

    def _bracket_check(self) -> str:
        """The exchange's maintenance tiers now (``leverageBracket``) against the dated snapshot the backtest used
        (:func:`mlrisk.backtest.futures.load_brackets`): one setup line saying they agree, or which tiers differ,
        so a user knows the backtest's liquidation prices no longer match the exchange's."""
        from mlrisk.backtest.futures import BRACKETS_SNAPSHOT, brackets_diff, load_brackets, snapshot_date

        now = self.venue.leverage_brackets()
        try:
            then = load_brackets(self.symbol)
        except DataError:
            return f"leverage brackets: {len(now)} tiers on the exchange; {self.symbol} is not in the backtest's snapshot " \
                   f"({BRACKETS_SNAPSHOT.name}), so the backtest used backtest.maintenance_margin_rate"
        diff = brackets_diff(then, now)
        if not diff:
            return f"leverage brackets: the exchange's {len(now)} tiers equal the backtest's snapshot of {snapshot_date()}"
        return (f"leverage brackets DIFFER from the backtest's snapshot of {snapshot_date()} ({diff}): the backtest's "
                "liquidation prices are off for positions in those tiers (the exchange liquidates by its own)")

    # ------------------------------------------------------------------------- account
    def _risk(self) -> tuple[Decimal, Decimal | None]:
        """(signed position quantity, average entry price or None) at the exchange."""
        p = self.venue.position()
        return p.quantity, p.entry_price

    def _settled(self) -> PositionReport:
        """``positionRisk``; while it differs from the recorded position, asked again (after 50 ms, doubling,
        at most 2 s apart) until it agrees or ``read_lag_ms`` has passed: a fill the bot recorded may not
        show there yet. Its last answer."""
        recorded = self.store.position(self.symbol).quantity
        p = self.venue.position()
        wait, waited, left = 0.05, 0.0, self.read_lag_ms / 1000
        while p.quantity != recorded and waited < left:
            step = min(wait, left - waited)
            self.sleep(step)
            waited, wait = waited + step, min(wait * 2, 2.0)
            p = self.venue.position()
        return p

    def balances(self) -> Balances:
        """``{asset: (available, wallet balance - available)}`` of the futures wallet."""
        return self.venue.balances()

    def equity(self, price: float) -> float:
        """Wallet balance plus the position's unrealised P&L at ``price`` (USDT): what the loss limits measure.
        Read at each close before the step, so it first records what the exchange did on its own since the
        last close: the funding fees settled (:meth:`record_funding`, when a funding time may have become
        visible since its last read) and, when ``positionRisk`` differs from the recorded position, a
        liquidation (see the module docstring; it halts entries before the step)."""
        self.record_funding()
        free, used = self.balances().get(self.filters.quote_asset, (ZERO, ZERO))
        amt, entry = self._risk()
        if amt != self.store.position(self.symbol).quantity and self._record_liquidations():
            amt, entry = self._risk()
        return float(free + used) + (float(amt) * (price - float(entry)) if entry is not None else 0.0)

    def exchange_position(self) -> Decimal:
        """The exchange's signed position (``positionAmt``, base asset)."""
        return self._risk()[0]

    def holding(self) -> Decimal:
        """The exchange's position (base asset, signed): what an executed order moves (settlement evidence)."""
        return self.exchange_position()

    def balance_snapshot(self) -> Decimal:
        """The recorded position (base asset, signed) just before a send: what the settlement's evidence
        compares the exchange's position with at the bound. Not ``positionRisk``: it may still trail a fill
        the bot recorded a moment before (an exit before a reversal's entry), which would read as a move."""
        return self.store.position(self.symbol).quantity

    def check_position(self) -> None:
        """Halt (:class:`~mlrisk.live.execution.base.PositionMismatch`) unless the recorded position equals the
        exchange's; a difference while orders are open is asked again once after recording them (one
        may have filled between the two requests), then ``positionRisk`` is asked again until
        ``read_lag_ms`` (it may trail a recorded fill) before halting."""
        recorded = self.store.position(self.symbol).quantity
        held = self.exchange_position()
        if held != recorded and self.store.orders([S.OPEN]):
            self.refresh()
            recorded, held = self.store.position(self.symbol).quantity, self.exchange_position()
        if held != recorded:
            held = self._settled().quantity
        if held != recorded and self._record_liquidations():
            recorded = self.store.position(self.symbol).quantity
        if held != recorded:
            base = self.filters.base_asset
            self._halt(f"position mismatch: the state file records {fmt(recorded)} {base} but the exchange's "
                       f"{self.symbol} futures position is {fmt(held)} {base} (traded outside the bot?)")

    def _record_liquidations(self) -> bool:
        """Record the exchange's own orders (liquidation, auto-deleverage) since the recorded position last
        changed (1 min earlier, on the exchange's clock; at most 7 days back) like the user data stream does
        (see the module docstring); halt entries when one closed the position. True when one was recorded."""
        pos = self.store.position(self.symbol)
        offset = int(getattr(self.exchange, "offset_ms", 0) or 0)
        since = max(pos.updated_ms + offset - 60_000, now_ms() + offset - TRADE_WINDOW_MS + 60_000)
        done = False
        for r in sorted(self.venue.liquidations(since), key=lambda x: (x.update_time_ms, x.exchange_order_id or 0)):
            cid = r.client_order_id
            o = self.store.order(cid)
            before = self.store.position(self.symbol).quantity
            new = None
            if o is None:
                if before == 0:
                    continue
                new = NewOrder(cid, self.symbol, r.side or ("SELL" if before > 0 else "BUY"),  # type: ignore[arg-type]
                               "LIQUIDATION", r.quantity or abs(before), self.store.last_processed_candle() or 0,
                               "liquidation", reduce_only=True)
                o = OrderRecord(**vars(new), created_ms=now_ms())   # written with its outcome, in one transaction
            if o.status.final:
                continue
            change = self._change(o, r)     # the exchange's reads first; then one write: the order, its trades,
            if change is None:              # the position it leaves and the halt
                continue
            pos = change["position"]
            after = before if pos is None else pos.quantity
            reason = None
            if after == 0 and before != 0:
                executed, quote = change["executed_qty"], change["cumulative_quote"]
                reason = liquidated_reason(self.symbol, before, cid, quote / executed if executed else None)
            self.store.transition(cid, **change, insert=new, halt_reason=reason)
            done = True
            if reason is not None:
                log.warning("%s", reason)
        return done

    # ------------------------------------------------------------------------- funding
    def _funding_due(self, now: int) -> bool:
        """Whether a settlement may be visible now that the last income read could not see (``now``: the
        exchange's clock, ms): no read yet, the interval unknown, or the last read started before the latest
        funding time at or before ``now`` (on the interval's UTC grid: 00/08/16 h for 8 h) plus
        ``MAX_JITTER_MS`` and the read-lag bound (by then its fee is readable)."""
        if self._funding_read_ms is None or not self._funding_every_ms:
            return True
        latest = now // self._funding_every_ms * self._funding_every_ms
        return self._funding_read_ms < latest + MAX_JITTER_MS + self.bound_ms

    def record_funding(self, force: bool = False) -> list[Funding]:
        """Record the funding fees the exchange settled on the symbol since the last one recorded (the first
        read: from the state file's first order, 1 min earlier on the exchange's clock: no position of the bot
        paid funding before it). Without ``force``, only when a funding time may have become visible since the
        last read (:meth:`_funding_due`; see the module docstring), else no request. Returns those new (also
        logged)."""
        offset = int(getattr(self.exchange, "offset_ms", 0) or 0)
        now = now_ms() + offset
        if not force and not self._funding_due(now):
            return []
        have = self.store.funding(self.symbol)
        if have:
            since = have[-1].time_ms            # inclusive: a fee already recorded is skipped by its id
        else:
            first = self.store.first_exchange_ids()[2]
            if first is None:
                return []
            since = first + offset - 60_000
        try:
            self._funding_every_ms = self.venue.funding_interval_ms()
        except ExchangeError as e:   # then read at every close: slower, never late
            self._funding_every_ms = None
            log.warning("funding interval unknown (%s): the income is read at every close", e)
        new = self.store.add_funding(self.venue.funding_fees(since))
        self._funding_read_ms = now
        for f in new:
            log.info("funding %s %s on %s at %d", fmt(f.amount), f.asset, f.symbol, f.time_ms)
        return new

    def funding_total(self) -> Decimal:
        """The funding recorded on the symbol so far (quote asset; > 0 received, < 0 paid)."""
        return sum((f.amount for f in self.store.funding(self.symbol)), ZERO)

    # ------------------------------------------------------------------------------ prepare
    def prepare(self, orders: Iterable[dict[str, Any]], close: float, open_ms: int,
                state: Any = None) -> tuple[list[NewOrder], list[str]]:
        """The exchange orders for the step's ``orders`` decided at ``close`` of the candle opening at
        ``open_ms``; ``state``: the step's :class:`~mlrisk.live.step.BotState` after the candle (None
        from ``flatten``). Refreshes the open orders first (see the module docstring)."""
        legs = list(orders)
        seen = len(self.alerts)
        self.refresh()
        self.check_position()  # e.g. traded by hand since the last close: halt (fail closed); a liquidation is recorded
        if state is not None:
            self._cancel_dropped_limits(state)
        if any(o["leg"] == "flat" for o in legs):
            for o in self.store.orders([S.OPEN]):  # resting entries and protective orders go first
                self.cancel(o)
        pos = self.store.position(self.symbol)
        held = pos.quantity
        exits = any(o["leg"] in ("exit", "flat") for o in legs)
        if state is not None and held != 0 and not exits and _sign(held) not in self._engine_sides(state):
            legs.insert(0, {"leg": "sync", "type": "MARKET"})
            exits = True
        out: list[NewOrder] = []
        skipped: list[str] = []
        q = self.filters.quote_asset
        for o in legs:
            leg = o["leg"]
            cid = make_client_order_id(self.prefix, self.symbol, open_ms, leg)
            if leg in ("exit", "flat", "sync"):
                if held != 0:
                    out.append(NewOrder(cid, self.symbol, "SELL" if held > 0 else "BUY", "MARKET", abs(held), open_ms, leg,
                                        reduce_only=True))
                continue
            avail = self.balances().get(q, (ZERO, ZERO))[0]
            if exits and held != 0 and pos.entry_price is not None:  # the exit releases the margin and P&L
                avail += abs(held) * pos.entry_price / self.leverage + held * (Decimal(str(close)) - pos.entry_price)
            _, notional = entry_size(float(avail), self.order_size, float(self.leverage), self.min_notional)
            if notional <= 0:
                skipped.append(f"entry skipped: available {q} {fmt(avail)} too small")
                continue
            after = (0.0 if exits else abs(float(held)) * close) + notional
            breach = position_cap_breach(after, self.max_position_notional, q)
            if breach:
                skipped.append(breach)
                continue
            try:
                if o["type"] == "LIMIT":
                    price = Decimal(str(o["price"]))
                    p = prepare_order(self.filters, o["side"], "LIMIT", Decimal(str(notional)) / price, price=price)
                else:
                    p = prepare_order(self.filters, o["side"], "MARKET", Decimal(str(notional)) / Decimal(str(close)),
                                      reference_price=close)
            except OrderFilterError as e:
                skipped.append(f"entry skipped: {e}")
                continue
            out.append(NewOrder(cid, self.symbol, p.side, p.type, p.quantity, open_ms, leg, price=p.price))
        return out, [f"ALERT {a}" for a in self.alerts[seen:]] + skipped

    @staticmethod
    def _engine_sides(state: Any) -> set[int]:
        """The sides the engine holds, is entering at the next open or rests limit entries on."""
        a = state.account
        return {x for x in (a.side, a.market_entry, a.limit_side) if x}

    def _cancel_dropped_limits(self, state: Any) -> None:
        """Cancel the resting LIMIT entries the engine no longer holds (expired, cancelled, or filled in
        the simulation): the engine keeps each with its expiry candle ``placed + limit_ttl``."""
        keep = {state.origin_ms + r.placed_candle * state.interval_ms for r in state.account.resting_limits(self.limit_ttl)}
        for o in self.store.orders([S.OPEN]):
            if o.type == "LIMIT" and o.leg == "entry" and o.candle_open_ms not in keep:
                self.cancel(o)

    # --------------------------------------------------------------------- open orders
    def refresh(self) -> None:
        """Query every open order of the bot and record what happened (fills, triggers, cancels). One the
        exchange no longer finds more than 3 days after its creation is recorded cancelled (Binance forgets
        cancelled/expired orders with no fill then; a filled one it keeps 90 days); a younger one stays open
        (a read may trail the write). The age is on the local clock (``created_ms`` is local; a skewed
        exchange clock does not age an order). Then the trades that lagged their order's status
        (:meth:`complete_fills`)."""
        for o in self.store.orders([S.OPEN]):
            r = self.venue.query(o)
            if r is not None:
                self._record(o, r)
            elif o.executed_qty == 0 and now_ms() - o.created_ms > FORGOTTEN_AFTER_MS:
                self.store.transition(o.client_order_id, S.CANCELLED, reason="not found more than 3 days after its "
                                      "creation: Binance forgets cancelled/expired unfilled orders then")
        self.complete_fills()

    def _order_trades(self, o: OrderRecord) -> list[FillReport]:
        """userTrades by order id, in 7-day windows when they do not add up (see :meth:`_trades`)."""
        offset = int(getattr(self.exchange, "offset_ms", 0) or 0)
        return self._trades(o, o.exchange_order_id, o.executed_qty, o.updated_ms + offset)

    def cancel(self, o: OrderRecord) -> OrderRecord:
        """Cancel an open order by client id; one that already filled or ended is recorded as it is."""
        r = self.venue.cancel(o)
        if r is None or r.cancel_ack:
            q = self.venue.query(o)
            if q is not None:
                return self._record(o, q)
            return self.store.transition(o.client_order_id, S.CANCELLED, reason="not at the exchange")
        return self._record(o, r)

    def send(self, cid: str) -> OrderRecord:
        """:meth:`BrokerBase.send`; a refusal the venue names (:class:`~mlrisk.live.venue.OrderRefused`) is
        acted on: an open order already has this client id (it is ours: queried and recorded); an open
        closePosition order of the same type and side exists (ours: adopted, this one not sent; not ours:
        refused naming it); else refused with its one-line reason (filters, margin)."""
        try:
            return super().send(cid)
        except OrderRefused as e:
            return self._refused(cid, e)

    def _refused(self, cid: str, e: OrderRefused) -> OrderRecord:
        o = self.store.order(cid)
        assert o is not None
        if e.kind == "duplicate":
            q = self.venue.query(o)
            if q is not None:
                return self._record(o, q)
        elif e.kind == "close_position_exists":
            for x in self.venue.open_orders():
                if x.type != o.type or x.side != o.side or x.client_order_id == cid:
                    continue
                other = x.client_order_id
                if not is_ours(other, self.prefix):
                    return self.store.transition(cid, S.REJECTED, reason=f"{e} (the open one is {other}, not the "
                                                                         "bot's: cancel it by hand)"[:300])
                known = self.store.order(other)
                if known is None:
                    self._adopt()
                else:
                    self._record(known, x)
                return self.store.transition(cid, S.CANCELLED, reason=f"not sent: {other}, an open {o.type} of the "
                                                                      "bot's, already protects the position (adopted)")
        return self.store.transition(cid, S.REJECTED, reason=str(e)[:300])

    def send_all(self, orders: Iterable[NewOrder]) -> list[OrderRecord]:
        """Send the candle's written-ahead orders (protective orders cancelled first when one reduces
        the position), then keep the protective orders in line with the position."""
        orders = list(orders)
        if any(o.reduce_only for o in orders):
            for p in self.store.orders([S.OPEN]):
                if p.type in ALGO_TYPES:
                    self.cancel(p)
        sent = [self.send(o.client_order_id) for o in orders]
        last = orders[0].candle_open_ms if orders else self.store.last_processed_candle()
        if last is not None:
            self.protect(last)
        return sent

    def protect(self, open_ms: int) -> list[OrderRecord]:
        """Take-profit / stop algo orders at the levels of the exchange's position (see the module
        docstring); ``open_ms`` names new ones. Returns the orders placed."""
        if not (self.take_profit or self.stop_loss):
            return []
        p = self._settled()   # right after an entry positionRisk may still show the position before it
        amt, entry = p.quantity, p.entry_price
        want: dict[str, tuple[str, str, Decimal]] = {}
        if amt != 0 and entry is not None:
            side = _sign(amt)
            tp, sl = protective_levels(side, float(entry), self.take_profit, self.stop_loss)
            out = "SELL" if side > 0 else "BUY"
            for leg, typ, px in (("tp", "TAKE_PROFIT_MARKET", tp), ("sl", "STOP_MARKET", sl)):
                if px > 0:
                    want[leg] = (typ, out, self._tick(px))
        for o in self.store.orders([S.OPEN]):
            if o.type not in ALGO_TYPES:
                continue
            fam = _family(o.type)   # "tp"/"sl", also for a replacement of a rejected one ("rtp"/"rsl")
            if want.get(fam) == (o.type, o.side, o.price):
                del want[fam]
            else:
                self.cancel(o)
        placed = []
        for leg, (typ, side, px) in want.items():
            cid = make_client_order_id(self.prefix, self.symbol, open_ms, leg)
            if self.store.order(cid) is not None:  # placed at this candle already (it ended: not again)
                continue
            self.store.insert_order(NewOrder(cid, self.symbol, side, typ, abs(amt), open_ms, leg, price=px,  # type: ignore[arg-type]
                                             reduce_only=True))
            placed.append(self.send(cid))
        return placed

    def _tick(self, px: float) -> Decimal:
        tick = self.filters.tick_size
        d = Decimal(repr(px))
        return (d / tick).to_integral_value(ROUND_HALF_EVEN) * tick if tick else d

    # ------------------------------------------------------------------------------ record
    def _record(self, o: OrderRecord, r: OrderReport) -> OrderRecord:
        """Record a report (create, query or cancel; an algo order's through its actual order) with
        the trades of the order (``userTrades``, those readable yet) and the resulting position (from the
        report's executed quantity and cumulative quote, so a fill counts even while its trades lag)."""
        o = self.store.order(o.client_order_id) or o
        if o.status.final:
            return o
        if r.cancel_ack:
            return self.store.transition(o.client_order_id, S.CANCELLED, reason="cancelled")
        change = self._change(o, r)
        if change is None:
            return o
        rejected = o.type in ALGO_TYPES and r.raw_status == ALGO_REJECTED_AT_TRIGGER
        rec = self.store.transition(o.client_order_id, **change,
                                    **({"reason": "REJECTED by the matching engine at its trigger"} if rejected else {}))
        if rejected:
            self._reprotect(rec)
        return rec

    def _change(self, o: OrderRecord, r: OrderReport) -> dict[str, Any] | None:
        """What a report ``r`` of order ``o`` changes (the arguments of
        :meth:`~mlrisk.live.state.StateStore.transition`: status, exchange id, executed quantity and quote,
        the new trades, the position), read from the exchange but not written; None when nothing changes."""
        status, oid, exchange_id = r.status, r.trade_order_id, r.exchange_order_id
        executed, quote = r.executed_qty or ZERO, r.cumulative_quote or ZERO
        trades = list(r.fills) if r.fills is not None else (
            self._trades(o, oid, executed, r.update_time_ms) if oid and executed > 0 else [])
        recs = [Fill(o.client_order_id, t.trade_id, t.price, t.qty, t.commission, t.commission_asset, t.time_ms)
                for t in trades]
        pos = self.store.position(o.symbol)
        qty, entry = pos.quantity, pos.entry_price
        # the position follows the order's own executed quantity and cumulative quote (its trades may lag:
        # userTrades trails the matching engine); the trades, with their fees, are recorded when they appear
        executed, quote = max(executed, o.executed_qty), max(quote, o.cumulative_quote)
        delta = executed - o.executed_qty
        if delta > 0:
            qty, entry = apply_fill(qty, entry, 1 if o.side == "BUY" else -1, delta, (quote - o.cumulative_quote) / delta)
        new_pos = Position(o.symbol, qty, entry) if (qty, entry) != (pos.quantity, pos.entry_price) else None
        if status is o.status and status is not S.OPEN and new_pos is None:
            return None
        return {"status": status, "exchange_order_id": exchange_id, "executed_qty": executed, "cumulative_quote": quote,
                "fills": recs, "position": new_pos}

    def _trades(self, o: OrderRecord, oid: int, executed: Decimal, update_ms: int) -> list[Any]:
        """The trades of exchange order ``oid``: asked by order id (Binance: the last 7 days); when they do
        not add up to ``executed`` (the order is older), read again in 7-day windows from its creation (the
        exchange's clock: the local ``created_ms`` plus the measured offset, no later than its last update
        ``update_ms``; 1 min either side) to its last update."""
        trades = self.venue.trades(oid)
        if sum((t.qty for t in trades), ZERO) >= executed or not update_ms:
            return trades
        created = o.created_ms + int(getattr(self.exchange, "offset_ms", 0) or 0)
        return self.venue.trades(oid, since_ms=min(created, update_ms) - 60_000, until_ms=update_ms + 60_000)

    def _reprotect(self, o: OrderRecord) -> None:
        """A take-profit/stop rejected when it triggered (e.g. a margin check) left the position unprotected:
        at once, close it with a reduce-only MARKET order (leg ``rclose``) when the mark price is already at or
        beyond the level, else place the same order again at the same level (leg ``r`` + its leg); one alert
        line either way (:attr:`alerts`, the log, and the candle's journal line)."""
        p = self._settled()
        amt, mark = p.quantity, p.mark_price
        if amt == 0:
            return self._alert(f"{o.client_order_id} ({o.type} at {fmt(o.price or ZERO)}) was rejected at its trigger; "
                               "the position is flat: nothing to protect")
        side = "SELL" if amt > 0 else "BUY"
        if o.side != side:   # the position changed side since: protect() places the levels of the new one
            return self._alert(f"{o.client_order_id} ({o.type}) was rejected at its trigger; the position is now "
                               f"{fmt(amt)}: protected at its own levels")
        below = (o.type == "STOP_MARKET") == (side == "SELL")      # a long's stop / a short's take-profit
        level = o.price or ZERO
        beyond = mark is None or (mark <= level if below else mark >= level)
        if not beyond:
            cid = make_client_order_id(self.prefix, self.symbol, o.candle_open_ms, ("r" + o.leg)[:6])
            if self.store.order(cid) is None:
                self.store.insert_order(NewOrder(cid, self.symbol, side, o.type, abs(amt), o.candle_open_ms,  # type: ignore[arg-type]
                                                 ("r" + o.leg)[:6], price=level, reduce_only=True))
                if self.send(cid).status is S.OPEN:
                    return self._alert(f"{o.client_order_id} ({o.type} at {fmt(level)}) was rejected at its trigger; "
                                       f"replaced by {cid} at the same level (mark {fmt(mark or ZERO)})")
        cid = make_client_order_id(self.prefix, self.symbol, o.candle_open_ms, "rclose")
        if self.store.order(cid) is None:
            self.store.insert_order(NewOrder(cid, self.symbol, side, "MARKET", abs(amt), o.candle_open_ms, "rclose",  # type: ignore[arg-type]
                                             reduce_only=True))
        rec = self.send(cid)
        self._alert(f"{o.client_order_id} ({o.type} at {fmt(level)}) was rejected at its trigger; the position "
                    f"({fmt(amt)}) closed by {cid}: {rec.status.value} (mark {fmt(mark or ZERO)})")

    def _alert(self, line: str) -> None:
        self.alerts.append(line)
        log.warning("ALERT %s", line)

    # ------------------------------------------------------------------------------ reconcile
    def reconcile(self) -> list[str]:
        """The shared reconciliation (settle, adopt, check the position against ``positionRisk``),
        then the protective orders brought in line with the position."""
        self.refresh()   # open orders first: one the exchange forgot is recorded cancelled, not re-sent
        done = [f"funding {fmt(f.amount)} {f.asset} at {f.time_ms}: recorded" for f in self.record_funding(force=True)]
        done += super().reconcile()
        last = self.store.last_processed_candle()
        if last is not None:
            done += [f"{o.client_order_id}: placed ({o.status.value})" for o in self.protect(last)]
        return done
