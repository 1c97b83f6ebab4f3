"""Funding, mark price and liquidation on USDT-M futures: the fake exchange serves them as Binance documents
them (through the real python-binance client), and the bot's futures broker follows the exchange across a
funding settlement (the equity its loss limits measure, the fees recorded in the state file) and across a
liquidation on the mark price while the last price never reached the level (the recorded position follows
the exchange's, entries halt)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal as D

import pytest
from fake_futures import FakeFuturesExchange
from fake_user_stream import FakeUserStream
from test_fake_futures import client_for
from test_live_futures_broker import H, T0, _bot, _broker, _exchange, _flat, _run, _scripted, _store

from mlrisk.live.state import Funding, OrderStatus, StateStore
from mlrisk.live.venue import BalanceUpdate, FuturesVenue, PositionUpdate, parse_futures_event

S = OrderStatus
EIGHT_H = 8 * H


def _open(fx: FakeFuturesExchange, side: str, qty: str = "0.1", leverage: int = 10, isolated: bool = True):
    """A position of ``qty`` BTC at the last price (40000) with ``leverage``; returns the client."""
    c = client_for(fx)
    if isolated:
        c.futures_change_margin_type(symbol="BTCUSDT", marginType="ISOLATED")
    c.futures_change_leverage(symbol="BTCUSDT", leverage=leverage)
    c.futures_create_order(symbol="BTCUSDT", side=side, type="MARKET", quantity=qty)
    return c


def _lp(side: int, qty: D, entry: D, wallet: D, mmr: D = D("0.004")) -> D:
    """Binance's liquidation price of an isolated one-way position (TMM = UPNL = 0, cum = 0)."""
    return (wallet - side * qty * entry) / (qty * mmr - side * qty)


# ----------------------------------------------------------------------------- the fake: mark price
def test_the_mark_price_is_served_apart_from_the_last_price():
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        c = _open(fx, "BUY")
        assert c.futures_mark_price(symbol="BTCUSDT")["markPrice"] == "40000.00000000"   # default: the last price
        fx.set_mark("BTCUSDT", "39000")
        p = c.futures_mark_price(symbol="BTCUSDT")
        assert (p["markPrice"], p["indexPrice"], p["lastFundingRate"]) == ("39000.00000000", "39000.00000000", "0.00000000")
        assert p["nextFundingTime"] % EIGHT_H == 0 and 0 < p["nextFundingTime"] - fx.server_ms() <= EIGHT_H
        r = c.futures_position_information(symbol="BTCUSDT")[0]
        assert (D(r["markPrice"]), D(r["unRealizedProfit"]), D(r["notional"])) == (39000, -100, 3900)
        assert D(r["maintMargin"]) == D("15.6")                                      # 3900 x 0.4 %
        assert D(r["liquidationPrice"]) == _lp(1, D("0.1"), D(40000), D(400))        # about 36144.58
        a = c.futures_account()
        assert (D(a["totalUnrealizedProfit"]), D(a["totalMaintMargin"])) == (-100, D("15.6"))
        assert D(c.futures_account_balance()[0]["crossUnPnl"]) == -100
        o = c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.05", reduceOnly="true",
                                   newOrderRespType="RESULT")
        assert D(o["avgPrice"]) == 40000                                              # orders fill at the last price


# ----------------------------------------------------------------------------- the fake: funding
@pytest.mark.parametrize("side, fee", [("BUY", "-0.41"), ("SELL", "0.41")])   # a positive rate: longs pay, shorts receive
def test_a_funding_settlement_pays_rate_times_the_notional_at_the_mark(side, fee):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        c = _open(fx, side)
        fx.set_mark("BTCUSDT", "41000")
        before, at = fx.wallet, fx.server_ms()
        fx.set_funding("BTCUSDT", "0.0001", next_ms=at)
        rows = c.futures_income_history(symbol="BTCUSDT", incomeType="FUNDING_FEE")   # the request settles first
        assert [(r["incomeType"], D(r["income"]), r["asset"], r["time"], r["symbol"]) for r in rows] == [
            ("FUNDING_FEE", D(fee), "USDT", at, "BTCUSDT")]
        assert isinstance(rows[0]["tranId"], int) and fx.wallet == before + D(fee)
        assert D(c.futures_account()["totalWalletBalance"]) == fx.wallet
        r = c.futures_position_information(symbol="BTCUSDT")[0]
        assert D(r["isolatedWallet"]) == 400 + D(fee)                                 # charged to the isolated margin
        amt = D("0.1") if side == "BUY" else D("-0.1")
        assert D(r["liquidationPrice"]) == _lp(1 if side == "BUY" else -1, abs(amt), D(40000), 400 + D(fee))
        hist = c.futures_funding_rate(symbol="BTCUSDT")
        assert [(h["fundingRate"], h["fundingTime"], h["markPrice"]) for h in hist] == [("0.00010000", at, "41000.00000000")]
        assert c.futures_mark_price(symbol="BTCUSDT")["nextFundingTime"] == at + EIGHT_H
        c.futures_income_history(symbol="BTCUSDT")                                     # once per funding time
        assert fx.wallet == before + D(fee)
        kinds = [r["incomeType"] for r in c.futures_income_history(symbol="BTCUSDT")]
        assert kinds == ["COMMISSION", "FUNDING_FEE"]


def test_funding_settles_when_the_fake_clock_passes_the_funding_time():
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        c = _open(fx, "BUY")
        fx.set_funding("BTCUSDT", "0.0001")
        nxt = c.futures_mark_price(symbol="BTCUSDT")["nextFundingTime"]
        before = fx.wallet
        assert c.futures_funding_rate(symbol="BTCUSDT") == [] and fx.wallet == before
        fx.clock_skew_ms += nxt - fx.server_ms()                                        # the clock reaches it
        assert [h["fundingTime"] for h in c.futures_funding_rate(symbol="BTCUSDT")] == [nxt]   # a public request
        assert fx.wallet == before - D("0.4")


@pytest.mark.parametrize("isolated", [True, False])
def test_the_stream_pushes_account_update_with_reason_funding_fee(isolated):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, FakeUserStream(fx, "futures") as us:
        _open(fx, "BUY", isolated=isolated)
        assert us.caught_up()
        seen = len(us.events)
        fx.set_funding("BTCUSDT", "0.0001", next_ms=fx.server_ms())
        assert us.caught_up()                                                           # the observer settles it
        events = [e for _, e in us.events[seen:]]
        assert [e["a"]["m"] for e in events] == ["FUNDING_FEE"]                         # no second (ORDER) event
        a = events[0]["a"]
        assert a["B"] == [{"a": "USDT", "wb": str(fx.wallet.normalize()), "cw": str(fx.wallet.normalize()), "bc": "-0.4"}]
        if not isolated:                                        # cross: "only the balance B ... without any position P"
            assert a["P"] == [] and [type(u) for u in parse_futures_event(events[0])] == [BalanceUpdate]
            return
        assert [(p["s"], p["mt"], D(p["iw"]), D(p["pa"])) for p in a["P"]] == [("BTCUSDT", "isolated", D("399.6"), D("0.1"))]
        parsed = parse_futures_event(events[0])
        assert [type(u) for u in parsed] == [BalanceUpdate, PositionUpdate]
        assert parsed[0].reason == "FUNDING_FEE" and parsed[0].free == fx.wallet


# ----------------------------------------------------------------------------- the fake: liquidation
@pytest.mark.parametrize("side", [1, -1])
def test_the_mark_price_liquidates_and_the_last_price_does_not(side):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        c = _open(fx, "BUY" if side > 0 else "SELL")
        lp = _lp(side, D("0.1"), D(40000), D(400))                                     # 36144.58 / 43824.70
        fx.set_mark("BTCUSDT", "40000")
        beyond = lp - side * 500
        fx.set_price("BTCUSDT", beyond)                                                 # the last price crosses it
        assert fx.position()[0] == side * D("0.1") and fx.liquidations == []
        fx.set_price("BTCUSDT", "40000")
        fx.set_mark("BTCUSDT", lp + side * 1)                                          # the mark stops short of it
        assert fx.position()[0] == side * D("0.1")
        done = fx.set_mark("BTCUSDT", beyond)                                          # the mark crosses it
        assert fx.position() == (0, 0) and done == fx.liquidations and len(done) == 1
        o = c.futures_get_order(symbol="BTCUSDT", orderId=done[0]["orderId"])
        assert o["clientOrderId"].startswith("autoclose-") and (o["type"], o["status"]) == ("LIQUIDATION", "FILLED")
        assert D(o["avgPrice"]) == lp.quantize(D("0.1"))                                # at the liquidation price
        assert c.futures_position_information(symbol="BTCUSDT") == []


def test_cross_margin_liquidates_at_the_wallet_s_liquidation_price():
    """Cross: WB is the wallet (TMM, UPNL of the other symbols: none here), so the price is far lower."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}, wallet="1000") as fx:
        c = _open(fx, "BUY", qty="0.5", leverage=20, isolated=False)
        lp = _lp(1, D("0.5"), D(40000), fx.wallet)                                     # the wallet after the fee: 990
        assert D(c.futures_position_information(symbol="BTCUSDT")[0]["liquidationPrice"]) == lp   # about 38172.69
        fx.set_mark("BTCUSDT", lp + D("0.01"))
        assert fx.position()[0] == D("0.5")
        fx.set_mark("BTCUSDT", lp)
        assert fx.position()[0] == 0 and len(fx.liquidations) == 1


# ----------------------------------------------------------------------------- the broker
def _clock_to(fx: FakeFuturesExchange, bot, at_ms: int) -> None:
    """Move the fake's clock to ``at_ms`` (settling what it passes at the next request) and let the bot's
    clock offset follow (it is measured at each start)."""
    fx.clock_skew_ms += at_ms - fx.server_ms()
    bot.broker.exchange.server_time_ms()


def _settle_at_the_next_funding_time(fx: FakeFuturesExchange, bot, rate: str) -> None:
    """Binance settles on the UTC grid of the funding interval: the fake's clock moves to its next one."""
    fx.set_funding("BTCUSDT", rate)
    _clock_to(fx, bot, client_for(fx).futures_mark_price(symbol="BTCUSDT")["nextFundingTime"])


def test_across_a_funding_settlement_the_loss_limit_equity_is_the_exchange_wallet(tmp_path):
    candles = _flat([40000, 40000, 40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]
        assert held > 0 and store.position("BTCUSDT").quantity == held
        _run(fx, bot, candles, 2, 3)
        mark0, wallet0 = bot.state.last_mark, fx.wallet
        assert mark0 == float(wallet0) and store.funding() == []                       # price = entry: no open P&L
        _settle_at_the_next_funding_time(fx, bot, "0.0001")
        _run(fx, bot, candles, 3, 4)
        fee = -(held * 40000 * D("0.0001"))                                             # the long pays
        assert fx.wallet == wallet0 + fee
        assert bot.state.last_mark == float(fx.wallet) and bot.state.last_mark - mark0 == pytest.approx(float(fee))
        rec = store.funding("BTCUSDT")
        assert [(f.amount, f.asset) for f in rec] == [(fee, "USDT")] and bot.broker.funding_total() == fee
        assert rec[0].tran_id == [r["tranId"] for r in fx.income if r["incomeType"] == "FUNDING_FEE"][0]
        _settle_at_the_next_funding_time(fx, bot, "-0.0002")                           # negative: the long receives
        _run(fx, bot, candles, 4, 5)
        assert [f.amount for f in store.funding("BTCUSDT")] == [fee, held * 40000 * D("0.0002")]   # none twice
        assert bot.state.last_mark == float(fx.wallet)
        assert not store.risk().halted and store.position("BTCUSDT").quantity == fx.position()[0] == held


def test_the_income_is_read_only_at_closes_where_a_settlement_may_have_become_visible(tmp_path):
    """Off the hot path: a close between two funding times sends no income request; the first close at or
    after a funding time reads it and records the fee, a close still within MAX_JITTER_MS + the read-lag
    bound of it reads again (the fee may not have been readable yet), later closes do not. The interval is
    the symbol's (fundingInfo, re-read at each income read): after Binance moves it to 4 h, the 4 h times
    count. A restart reads at once."""
    from mlrisk.data.derivatives import MAX_JITTER_MS

    candles = _flat([40000] * 12)
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        nxt = client_for(fx).futures_mark_price(symbol="BTCUSDT")["nextFundingTime"]
        _clock_to(fx, bot, nxt - 3 * H)                                                 # mid-interval
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]

        def income_reads() -> int:
            n = sum(1 for r in fx.requests if r.path == "/fapi/v1/income")
            fx.requests.clear()
            return n

        income_reads()
        _run(fx, bot, candles, 2, 3)
        assert income_reads() == 1                                                      # the first read since start
        _run(fx, bot, candles, 3, 5)
        assert income_reads() == 0                                                      # no funding time passed
        fx.funding_info = [{"symbol": "BTCUSDT", "fundingIntervalHours": 4}]            # Binance moves it to 4 h
        fx.set_funding("BTCUSDT", "0.0001", interval_ms=4 * H)
        _clock_to(fx, bot, nxt)                                                         # the 8 h (and 4 h) time
        _run(fx, bot, candles, 5, 6)
        assert income_reads() == 1 and [f.time_ms for f in store.funding("BTCUSDT")] == [nxt]
        _clock_to(fx, bot, nxt + MAX_JITTER_MS // 2)
        _run(fx, bot, candles, 6, 7)
        assert income_reads() == 1 and len(store.funding("BTCUSDT")) == 1               # within the window: again
        _clock_to(fx, bot, nxt + MAX_JITTER_MS + bot.broker.bound_ms + 1)
        _run(fx, bot, candles, 7, 8)
        assert income_reads() == 1                                                      # the last read was inside it
        _clock_to(fx, bot, nxt + 3 * H)
        _run(fx, bot, candles, 8, 9)
        assert income_reads() == 0
        _clock_to(fx, bot, nxt + 4 * H)                                                 # the next 4 h time
        _run(fx, bot, candles, 9, 10)
        assert income_reads() == 1 and [f.time_ms for f in store.funding("BTCUSDT")] == [nxt, nxt + 4 * H]
        fee = -(held * 40000 * D("0.0001"))
        assert [f.amount for f in store.funding("BTCUSDT")] == [fee, fee] and not store.risk().halted
        restarted = _bot(fx, store, _scripted({}))
        _run(fx, restarted, candles, 10, 11)
        assert income_reads() >= 1                                                      # a new process reads at once


def test_a_liquidation_on_the_mark_price_is_recorded_at_the_next_close_and_halts_entries(tmp_path):
    """No user data stream: the close finds positionRisk flat, the exchange's autoclose order in allOrders."""
    candles = _flat([40000, 40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9, 2: 0.1}))
        _run(fx, bot, candles, 1, 2)
        held, entry = fx.position()
        assert held > 0 and fx.margin_type["BTCUSDT"] == "isolated" and fx.leverage["BTCUSDT"] == 3
        lp = _lp(1, held, entry, held * entry / 3)                                     # about 26773.8
        fx.set_mark("BTCUSDT", "26000")                                                 # the last price stays 40000
        assert fx.position()[0] == 0 and len(fx.liquidations) == 1
        n = len(fx.orders)
        _run(fx, bot, candles, 2, 3)                                                    # a short signal at this close
        assert bot.last_processed == T0 + 2 * H                                         # no mismatch: the close went on
        r = store.risk()
        assert r.halted and r.halt_reason.startswith("liquidated: the exchange closed the BTCUSDT position of 0.075")
        liq = [o for o in store.orders() if o.leg == "liquidation"]
        assert len(liq) == 1 and liq[0].status is S.FILLED and liq[0].executed_qty == held and liq[0].side == "SELL"
        assert liq[0].client_order_id.startswith("autoclose-")
        assert [f.price for f in store.fills(liq[0].client_order_id)] == [lp.quantize(D("0.1"))]
        assert store.position("BTCUSDT").quantity == 0 == fx.position()[0]
        assert len(fx.orders) == n                                                      # the short entry was not sent
        _run(fx, bot, candles, 3, 4)
        assert store.risk().halt_reason.startswith("liquidated") and fx.position()[0] == 0


def test_with_the_user_stream_a_mark_price_liquidation_is_recorded_between_closes(tmp_path):
    from test_live_stream_wiring import _between_closes, _feed, _wired

    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import Stopper

    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held, entry = fx.position()
        lp = _lp(1, held, entry, held * entry / 3).quantize(D("0.1"))
        with _wired(fx, "futures", bot.broker, CandleLog(tmp_path / "bot.jsonl", None)) as (_us, _stream, pump):
            stop = Stopper(None)
            _between_closes(_feed(fx, "futures", stop, pump), stop, lambda: fx.set_mark("BTCUSDT", "26000"))
        assert store.position("BTCUSDT").quantity == 0 == fx.position()[0] and fx.prices["BTCUSDT"] == 40000
        liq = [o for o in store.orders() if o.leg == "liquidation"]
        assert len(liq) == 1 and [f.price for f in store.fills(liq[0].client_order_id)] == [lp]
        assert store.risk().halt_reason.startswith("liquidated") and bot.last_processed == T0 + H
        _run(fx, bot, candles, 2, 3)                                                    # the next close agrees
        assert store.risk().halt_reason.startswith("liquidated") and len(fx.orders) == 2


def test_a_restart_after_funding_and_a_liquidation_records_both_in_the_reconciliation(tmp_path):
    """While the bot was down: a funding settlement, then a liquidation on the mark price. The start's
    reconciliation records the fee and the liquidation (the recorded position follows), no mismatch."""
    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]
        fx.set_funding("BTCUSDT", "0.0001", next_ms=fx.server_ms())
        fx.set_mark("BTCUSDT", "26000")                                                 # settles, then liquidates
        assert fx.position()[0] == 0 and store.position("BTCUSDT").quantity == held
        lines = _broker(fx, store).reconcile()                                          # the restart
        assert lines[0].startswith("funding -0.3 USDT at ") and lines[0].endswith(": recorded")
        assert [f.amount for f in store.funding("BTCUSDT")] == [D("-0.3")]
        assert store.position("BTCUSDT").quantity == 0 and store.risk().halt_reason.startswith("liquidated")
        assert [o.leg for o in store.orders() if o.client_order_id.startswith("autoclose-")] == ["liquidation"]


CRASH_AT = ["_save_position", "_set_halt"]


def _crash_at(monkeypatch, write: str):
    """A crash inside the liquidation's record: at the write of the position it leaves (after the order's
    row), or at the halt (after the order, its trade and the position)."""
    def boom(*a, **k):
        raise RuntimeError("killed")
    monkeypatch.setattr(StateStore, write, staticmethod(boom))


def _nothing_half_recorded(store, held):
    assert [o for o in store.orders() if o.leg == "liquidation"] == []
    assert store.position("BTCUSDT").quantity == held and not store.risk().halted


@pytest.mark.parametrize("write", CRASH_AT)
def test_a_crash_while_recording_a_liquidation_from_all_orders_leaves_no_half_record(tmp_path, monkeypatch, write):
    """The order, its trade, the position it leaves and the halt are one transaction: a crash inside it
    leaves none of them (not a pending liquidation order beside an unchanged position), and the next
    close records it whole."""
    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]
        fx.set_mark("BTCUSDT", "26000")
        assert fx.position()[0] == 0
        with monkeypatch.context() as m:
            _crash_at(m, write)
            with pytest.raises(RuntimeError, match="killed"):
                bot.broker.check_position()
        _nothing_half_recorded(store, held)
        bot.broker.check_position()                                                     # the restart's check
        liq = [o for o in store.orders() if o.leg == "liquidation"]
        assert len(liq) == 1 and liq[0].status is S.FILLED and store.position("BTCUSDT").quantity == 0
        assert store.risk().halt_reason.startswith("liquidated")
        assert [e[:2] for e in store.events(liq[0].client_order_id)] == [(None, "pending_submit"), ("pending_submit", "filled")]


@pytest.mark.parametrize("write", CRASH_AT)
def test_a_crash_while_recording_a_streamed_liquidation_leaves_no_half_record(tmp_path, monkeypatch, write):
    from mlrisk.live.venue import FillReport, OrderUpdate

    candles = _flat([40000, 40000, 40000])
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _scripted({1: 0.9}))
        _run(fx, bot, candles, 1, 2)
        held = fx.position()[0]
        u = OrderUpdate("BTCUSDT", "autoclose-1", 99, S.FILLED, "FILLED", held, held * 26000,
                        FillReport(7, D(26000), held, D(0), "USDT", fx.server_ms()), None, True, fx.server_ms())
        with monkeypatch.context() as m:
            _crash_at(m, write)
            with pytest.raises(RuntimeError, match="killed"):
                bot.broker.apply_update(u)
        _nothing_half_recorded(store, held)
        notes = bot.broker.apply_update(u)                                              # the update again
        assert [n[0] for n in notes] == ["stream", "liquidated"]
        assert store.order("autoclose-1").status is S.FILLED and store.position("BTCUSDT").quantity == 0
        assert store.risk().halt_reason.startswith("liquidated")


# ----------------------------------------------------------------------------- venue and state
def test_funding_fees_are_read_page_by_page_and_only_funding(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        t = fx.server_ms() - 3_000_000
        fx.income.extend({"symbol": "BTCUSDT", "incomeType": kind, "income": "-0.1", "asset": "USDT", "info": kind,
                          "time": t + i, "tranId": 10 + i, "tradeId": ""}
                         for i, kind in enumerate(["FUNDING_FEE"] * 1500 + ["COMMISSION"] * 3))
        got = FuturesVenue(_exchange(fx), "BTCUSDT").funding_fees(t)
        assert [f.tran_id for f in got] == list(range(10, 1510))
        assert {(f.amount, f.asset, f.symbol) for f in got} == {(D("-0.1"), "USDT", "BTCUSDT")}


def test_funding_fees_straddling_a_page_boundary_at_one_time_are_read_once_each():
    """GET /fapi/v1/income (Get Income History): ``startTime``/``endTime`` "INCLUSIVE", ``limit`` "Default 100;
    max 1000", "trandId is unique in the same incomeType": the next page starts AT the last row's time (not
    after it), so a second fee stamped the same millisecond as the page's last row (e.g. hedge mode's two
    legs) is read on the next page, and the repeated row is dropped by its tranId."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        t = fx.server_ms() - 3_000_000
        times = [t + i for i in range(999)] + [t + 999, t + 999] + [t + 1000 + i for i in range(300)]
        fx.income.extend({"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": "-0.1", "asset": "USDT",
                          "info": "FUNDING_FEE", "time": ms, "tranId": 10 + i, "tradeId": ""} for i, ms in enumerate(times))
        n = len(fx.requests)
        got = FuturesVenue(_exchange(fx), "BTCUSDT").funding_fees(t)
        assert [f.tran_id for f in got] == list(range(10, 10 + len(times)))
        pages = [r.query for r in fx.requests[n:] if r.path == "/fapi/v1/income"]
        assert [(p["startTime"], p["limit"], p["incomeType"], p["symbol"]) for p in pages] == \
            [(str(t), "1000", "FUNDING_FEE", "BTCUSDT"), (str(t + 999), "1000", "FUNDING_FEE", "BTCUSDT")]


def test_liquidations_are_read_page_by_page_from_all_orders():
    """More than a page (1000) of the symbol's orders in the window before the exchange's liquidation order:
    it is found on the second page, which starts after the first page's largest orderId, in the same window."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx:
        since = fx.server_ms() - 60_000
        _open(fx, "BUY")
        for i in range(1000):      # the bot's cancelled orders in between, straight into the fake's book
            fx._make_order("BTCUSDT", "BUY", "LIMIT", D("0.001"), D("30000"), f"mlr-{i}", False, "GTC")["status"] = "CANCELED"
        fx.set_mark("BTCUSDT", "26000")
        assert len(fx.liquidations) == 1
        n = len(fx.requests)
        got = FuturesVenue(_exchange(fx), "BTCUSDT").liquidations(since)
        assert [r.client_order_id for r in got] == [fx.liquidations[0]["clientOrderId"]]
        pages = [r.query for r in fx.requests[n:] if r.path == "/fapi/v1/allOrders"]
        assert len(pages) == 2 and all(p["startTime"] == str(since) and p["limit"] == "1000" for p in pages)
        assert "orderId" not in pages[0] and int(pages[1]["orderId"]) == max(o["orderId"] for o in fx.orders[:1000]) + 1


def test_a_version_1_state_file_gains_the_funding_table(tmp_path):
    path = tmp_path / "s.sqlite"
    with StateStore(path, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet"):
        pass
    with sqlite3.connect(path) as c:                                                    # as schema version 1 left it
        c.execute("DROP TABLE funding")
        c.execute("UPDATE schema_version SET version=1")
    with StateStore(path, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet") as s:
        f = Funding(7, "BTCUSDT", "USDT", D("-0.30000000"), T0)
        assert s.add_funding([f]) == [f] and s.add_funding([f]) == []                   # idempotent on the id
        assert s.funding("BTCUSDT") == [Funding(7, "BTCUSDT", "USDT", D("-0.3"), T0)] and s.funding("ETHUSDT") == []
