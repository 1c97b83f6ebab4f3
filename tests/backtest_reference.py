"""A slow, plain-Python reference of the engine's semantics (see :mod:`mlrisk.backtest.engine`).

Written for clarity, one object per entry and per order, and used by the tests as an oracle:
on random cases the compiled engine must produce the same trades and an equity curve equal to
1e-9 relative. Never used by the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlrisk.config.backtest import BacktestParams
from mlrisk.exchange_filters import floor_to, to_decimal


@dataclass
class Entry:
    candle: int
    side: int
    price: float
    qty: float
    margin: float
    fee: float
    kind: str  # "market" | "limit"
    funding: float = 0.0


@dataclass
class LimitOrder:
    side: int
    price: float
    last_candle: int  # may fill up to and including this candle


@dataclass
class Trade:
    entry_candle: int
    exit_candle: int
    side: int
    entry_price: float
    exit_price: float
    qty: float
    margin: float
    entry_fee: float
    exit_fee: float
    funding: float
    pnl: float
    reason: str
    entry_kind: str


@dataclass
class Account:
    p: BacktestParams
    funding_per_candle: float
    cash: float
    brackets: list[tuple[float, float, float]] = field(default_factory=list)  # (notionalFloor, mmr, cum)
    entries: list[Entry] = field(default_factory=list)
    orders: list[LimitOrder] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    pending_market_side: int = 0
    pending_exit: bool = False
    last_limit_fill: int = -1

    # -- position views
    @property
    def side(self) -> int:
        return self.entries[0].side if self.entries else 0

    def qty(self) -> float:
        return sum(e.qty for e in self.entries)

    def avg_price(self) -> float:
        return sum(e.qty * e.price for e in self.entries) / self.qty()

    def margin_in_use(self) -> float:
        # the isolated wallet: funding is paid from (received into) the position's isolated margin
        return sum(e.margin - e.funding for e in self.entries)

    def unrealised(self, price: float) -> float:
        return sum(e.side * e.qty * (price - e.price) for e in self.entries)

    def maintenance(self) -> tuple[float, float]:
        """(rate, amount) of the tier holding the position's entry notional; the flat rate without tiers."""
        notional = sum(e.qty * e.price for e in self.entries)
        tiers = [(mmr, cum) for floor, mmr, cum in self.brackets if floor <= notional]
        return tiers[-1] if tiers else (self.p.maintenance_margin_rate, 0.0)

    def liquidation_price(self) -> float:
        # Binance, isolated: LP = (WB + cum - side*Q*EP) / (Q*MMR - side*Q), WB the position's margin
        q, avg, m = self.qty(), self.avg_price(), self.margin_in_use()
        mmr, cum = self.maintenance()
        lp = (m + cum - self.side * q * avg) / (q * mmr - self.side * q)
        return max(lp, 0.0) if self.side == 1 else lp

    # -- actions
    def open_entry(self, t: int, side: int, price: float, kind: str) -> None:
        free = self.cash + self.unrealised(price) - self.margin_in_use()
        margin = self.p.order_size * free
        notional = margin * self.p.leverage
        if margin <= 0 or notional <= 0 or notional < self.p.min_notional:
            return
        qty = notional / price
        if self.p.lot_step > 0:  # the live bot's rounding rule, exact decimals
            qty = float(floor_to(to_decimal(qty), to_decimal(self.p.lot_step)))
            notional = qty * price
            if qty <= 0 or notional < self.p.min_notional:
                return
            margin = notional / self.p.leverage
        fee = (self.p.maker_fee_rate if kind == "limit" else self.p.fee_rate) * notional
        self.cash -= fee
        self.entries.append(Entry(t, side, price, qty, margin, fee, kind))
        if kind == "limit":
            self.last_limit_fill = t

    def close_all(self, t: int, price: float, reason: str) -> None:
        liq = self.liquidation_price()
        if reason != "liquidation" and (price <= liq if self.side == 1 else price >= liq):
            reason, price = "liquidation", liq
        if reason == "liquidation":
            fees = [self.p.liquidation_fee_rate * e.qty * price for e in self.entries]
            loss = self.margin_in_use() + sum(fees)
            scale = 1.0 if loss <= self.cash else (max(self.cash, 0.0) / loss if loss > 0 else 0.0)
            for e, f in zip(self.entries, fees):
                pnl = -(e.margin - e.funding) * scale - f * scale - e.fee - e.funding
                self.trades.append(Trade(e.candle, t, e.side, e.price, price, e.qty, e.margin, e.fee, f * scale,
                                         e.funding, pnl, reason, e.kind))
            self.cash -= loss * scale
        else:
            for e in self.entries:
                exit_fee = self.p.fee_rate * e.qty * price
                gross = e.side * e.qty * (price - e.price)
                self.cash += gross - exit_fee
                self.trades.append(Trade(e.candle, t, e.side, e.price, price, e.qty, e.margin, e.fee, exit_fee,
                                         e.funding, gross - e.fee - exit_fee - e.funding, reason, e.kind))
        self.entries = []


def _signal(p_up: float, threshold: float) -> int:
    if p_up is None or math.isnan(p_up):
        return 0
    if p_up >= 0.5 + threshold:
        return 1
    if p_up <= 0.5 - threshold:
        return -1
    return 0


def reference_backtest(open_: list[float], high: list[float], low: list[float], close: list[float],
                       p_up: list[float], p: BacktestParams, interval_ms: int,
                       mark: list[tuple[float, float, float]] | None = None, funding: list[float] | None = None,
                       brackets: list[tuple[float, float, float]] | None = None) -> tuple[list[float], list[Trade]]:
    """Equity per close and the closed-entry trades, by the rules in the engine's docstring.
    ``mark``: (open, high, low) of the mark candle per candle (a NaN: the last price that candle);
    ``funding``: the rate settled at each candle's open; ``brackets``: (notionalFloor, mmr, cum) rows."""
    slip = p.slippage_bps / 1e4
    acc = Account(p, p.funding_rate * interval_ms / (8 * 3_600_000), p.initial_equity, list(brackets or []))
    tp, sl = p.take_profit or 0.0, p.stop_loss or 0.0
    intrabar = p.exit_check == "intrabar"
    equity: list[float] = []
    n = len(close)
    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        # the prices liquidation watches: the mark candle, or the last price where it has no data
        m_o, m_h, m_l = mark[t] if mark is not None else (o, h, lo)
        if math.isnan(m_o) or math.isnan(m_h) or math.isnan(m_l):
            m_o, m_h, m_l = o, h, lo
        # (1) the open: funding settled now, on the position held into the open, at the mark open
        if funding is not None and funding[t] != 0:
            for e in acc.entries:
                f = funding[t] * e.qty * m_o * e.side
                e.funding += f
                acc.cash -= f
        # then a gap through the liquidation price liquidates
        if acc.entries:
            liq = acc.liquidation_price()
            if (acc.side == 1 and m_o <= liq) or (acc.side == -1 and m_o >= liq):
                acc.close_all(t, liq, "liquidation")
        if acc.entries:
            held = t - min(e.candle for e in acc.entries)
            if acc.pending_exit:
                acc.close_all(t, o * (1 - acc.side * slip), "signal")
            elif p.hold > 0 and held >= p.hold:
                acc.close_all(t, o * (1 - acc.side * slip), "hold")
        acc.pending_exit = False
        if acc.pending_market_side:
            s = acc.pending_market_side
            acc.open_entry(t, s, o * (1 + s * slip), "market")
            acc.pending_market_side = 0
        # (2) resting limit orders, oldest first
        still = []
        for order in acc.orders:
            if t > order.last_candle:
                continue
            through = lo < order.price if order.side == 1 else h > order.price
            if through and acc.side in (0, order.side) and len(acc.entries) < p.pyramid_max:
                acc.open_entry(t, order.side, order.price, "limit")
                continue
            still.append(order)
        acc.orders = still
        # (3) intrabar exits
        if acc.entries and acc.last_limit_fill != t:
            s, avg, liq = acc.side, acc.avg_price(), acc.liquidation_price()
            adverse = lo if s == 1 else h
            favourable = h if s == 1 else lo
            mark_adverse = m_l if s == 1 else m_h
            liq_hit = mark_adverse <= liq if s == 1 else mark_adverse >= liq
            stop = avg * (1 - s * sl)
            stop_hit = intrabar and sl > 0 and (adverse <= stop if s == 1 else adverse >= stop)
            target = avg * (1 + s * tp)
            tp_hit = intrabar and tp > 0 and (favourable >= target if s == 1 else favourable <= target)
            opens_beyond_liq = m_o <= liq if s == 1 else m_o >= liq
            liq_nearer = liq >= stop if s == 1 else liq <= stop
            if liq_hit and (opens_beyond_liq or not stop_hit or liq_nearer):
                acc.close_all(t, liq, "liquidation")
            elif stop_hit:
                level = min(o, stop) if s == 1 else max(o, stop)
                acc.close_all(t, level * (1 - s * slip), "stop_loss")
            elif tp_hit:
                level = max(o, target) if s == 1 else min(o, target)
                acc.close_all(t, level * (1 - s * slip), "take_profit")
        # (4) the close
        if acc.entries and not intrabar and acc.last_limit_fill != t:
            s, avg = acc.side, acc.avg_price()
            if sl > 0 and s * (c - avg) <= -sl * avg:
                acc.close_all(t, c * (1 - s * slip), "stop_loss")
            elif tp > 0 and s * (c - avg) >= tp * avg:
                acc.close_all(t, c * (1 - s * slip), "take_profit")
        if acc.entries and acc.funding_per_candle != 0 and funding is None:
            for e in acc.entries:
                f = acc.funding_per_candle * e.qty * c * e.side
                e.funding += f
                acc.cash -= f
        equity.append(max(acc.cash + acc.unrealised(c), 0.0))
        acc.orders = [o_ for o_ in acc.orders if o_.last_candle > t]
        s = _signal(p_up[t], p.threshold)
        if s != 0:
            if acc.side == -s:
                acc.pending_exit = True
            if acc.orders and acc.orders[0].side == -s:
                acc.orders = []
            same = (len(acc.entries) if acc.side == s else 0) + sum(1 for o_ in acc.orders if o_.side == s)
            allowed = p.direction == "both" or (p.direction == "long") == (s == 1)
            if allowed and same < p.pyramid_max and t < n - 1:
                if p.entry == "limit":
                    acc.orders.append(LimitOrder(s, c * (1 - s * p.limit_offset), t + p.limit_ttl))
                else:
                    acc.pending_market_side = s
    if acc.entries and n:
        acc.close_all(n - 1, close[-1] * (1 - acc.side * slip), "end")
        equity[-1] = max(acc.cash, 0.0)
    return equity, acc.trades


def random_prices(rng, n: int, vol: float):
    """Random candles (open, high, low, close around 100, per-candle volatility ``vol``) and P(up) with
    10 % NaN, for comparing the engine with this oracle on random cases."""
    c = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    o = np.r_[100.0, c[:-1]] * np.exp(rng.normal(0, vol / 4, n))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, vol, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, vol, n)))
    p = rng.uniform(0, 1, n)
    p[rng.uniform(size=n) < 0.1] = np.nan
    return o, h, lo, c, p
