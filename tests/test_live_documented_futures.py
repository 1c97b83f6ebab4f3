"""The futures bot against Binance's documented behaviour (issue 17, items 5-7): the kline websocket's 2026
routed paths, algo orders that stay TRIGGERING or end REJECTED, futures error codes, paging and time windows,
a lagging positionRisk, and ``--check-venue``. Every test runs against the fakes on 127.0.0.1."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
from websockets.sync.client import connect

from fake_binance import make_candles
from fake_kline_ws import FakeKlineWS
from mlrisk.live.feeds.websocket import stream_url
from mlrisk.live.settings import DEFAULT_WS_HOSTS


# ---------------------------------------------------------------------- websocket paths (item 7)
def _gets_kline(ws: FakeKlineWS, path: str, timeout: float = 0.3) -> bool:
    """Connect to ``path``, stream one closed candle: True when a message arrives within ``timeout`` s."""
    before = len(ws.paths)
    with connect(f"{ws.url}{path}", open_timeout=2) as conn:
        for _ in range(200):
            if len(ws.paths) > before:
                break
            time.sleep(0.005)
        ws.send_candle(make_candles(1)[0], partials=0)
        try:
            return bool(conn.recv(timeout=timeout))
        except TimeoutError:
            return False


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_the_default_futures_stream_uses_the_documented_market_path(mode):
    url = stream_url(DEFAULT_WS_HOSTS[(mode, "futures")], "BTCUSDT", "1h")
    u = urlparse(url)
    assert (u.scheme, u.netloc, u.path) == ("wss", "fstream.binance.com", "/market/ws/btcusdt@kline_1h")
    with FakeKlineWS(heartbeat_s=None, market="futures", legacy_paths=False) as ws:
        assert _gets_kline(ws, u.path)                                    # the routed path delivers
        assert not _gets_kline(ws, "/ws/btcusdt@kline_1h")                 # the retired one: silence, no error


@pytest.mark.parametrize("mode", ["paper", "live"])
def test_the_default_spot_stream_uses_the_documented_raw_path(mode):
    u = urlparse(stream_url(DEFAULT_WS_HOSTS[(mode, "spot")], "BTCUSDT", "1h"))
    assert (u.scheme, u.netloc, u.path) == ("wss", "stream.binance.com:9443", "/ws/btcusdt@kline_1h")
    with FakeKlineWS(heartbeat_s=None, market="spot") as ws:
        assert _gets_kline(ws, u.path)


# ---------------------------------------------------------------------- algo orders (item 5)
from decimal import Decimal as D  # noqa: E402

from fake_futures import FakeFuturesExchange  # noqa: E402
from mlrisk.live.state import OrderStatus  # noqa: E402
from test_live_futures_broker import BP, _agree, _bot, _broker, _frame, _run, _store, cid  # noqa: E402

S = OrderStatus
PROTECTED = BP.model_copy(update={"take_profit": 0.02, "stop_loss": 0.01})
#: candle 1 enters long at 40,000 (stop 39,600, take-profit 40,800); candle 2's low reaches the stop
STOPPED = _frame([(40000, 40000, 40000, 40000), (40000, 40000, 40000, 40000), (40000, 40000, 39400, 39500),
                  (39500, 39600, 39400, 39500)])
#: the same, but candle 2 never reaches the stop in the engine's candles (the real market dipped and came back)
DIPPED = _frame([(40000, 40000, 40000, 40000), (40000, 40000, 40000, 40000), (40000, 40000, 39700, 39800),
                 (39800, 39900, 39700, 39800)])


def test_a_triggering_algo_order_with_no_actual_order_stays_open_then_finishes_with_its_fills(tmp_path):
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED)
        _run(fx, bot, STOPPED, 1, 2)
        fx.algo_lag_ms = 400
        fx.set_price("BTCUSDT", "39550")                   # the stop triggers: TRIGGERING, actualOrderId ""
        assert [a["algoStatus"] for a in fx.algos if a["orderType"] == "STOP_MARKET"] == ["TRIGGERING"]
        bot.broker.refresh()                               # no int(""), no crash: still open
        assert store.order(cid(1, "sl")).status is S.OPEN
        time.sleep(1.0)                                    # TRIGGERED, then FINISHED
        bot.broker.refresh()
        sl = store.order(cid(1, "sl"))
        assert sl.status is S.FILLED and sl.executed_qty > 0
        assert [f.price for f in store.fills(cid(1, "sl"))] == [D("39600")]
        assert _agree(fx, store) == 0


def _predict_long():
    from test_live_futures_broker import _scripted
    return _scripted({1: 0.9})


def test_a_stop_rejected_at_its_trigger_closes_a_position_already_beyond_it_and_alerts(tmp_path):
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED)
        _run(fx, bot, STOPPED, 1, 2)
        fx.algo_reject = True
        fx.set_price("BTCUSDT", "39550")                   # the stop triggers and is REJECTED (margin check)
        assert fx.position()[0] > 0                        # the position is still there, unprotected
        _run(fx, bot, STOPPED, 2, 3)                       # no IllegalTransition: recorded, then closed at once
        assert store.order(cid(1, "sl")).status.final and "REJECTED" in store.order(cid(1, "sl")).reason
        assert _agree(fx, store) == 0
        closes = [o for o in fx.orders if o["reduceOnly"] and o["type"] == "MARKET" and o["status"] == "FILLED"]
        assert len(closes) == 1
        alerts = [a for a in bot.broker.alerts if "rejected" in a]
        assert len(alerts) == 1 and cid(1, "sl") in alerts[0]
        _run(fx, bot, STOPPED, 3, 4)                       # and the next candle runs on
        b2 = _broker(fx, store, PROTECTED)                 # a restart does not crash either
        b2.reconcile()
        assert _agree(fx, store) == 0 and not store.risk().halted


def test_a_stop_rejected_at_its_trigger_is_replaced_when_the_price_came_back(tmp_path):
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED)
        _run(fx, bot, DIPPED, 1, 2)
        fx.algo_reject = True
        fx.set_price("BTCUSDT", "39550")                   # triggers, REJECTED
        fx.set_price("BTCUSDT", "39800")                   # and the price is back above the stop
        _run(fx, bot, DIPPED, 2, 3)
        assert fx.position()[0] > 0 and _agree(fx, store) > 0
        stops = [a for a in fx.algos if a["orderType"] == "STOP_MARKET"]
        assert [a["algoStatus"] for a in stops] == ["REJECTED", "NEW"] and stops[1]["triggerPrice"] == D("39600")
        assert len([a for a in bot.broker.alerts if "rejected" in a]) == 1
        _run(fx, bot, DIPPED, 3, 4)                        # the replacement is kept, not churned
        stops = [a for a in fx.algos if a["orderType"] == "STOP_MARKET"]
        assert [a["algoStatus"] for a in stops] == ["REJECTED", "NEW"]
        fx.algo_reject = False
        fx.set_price("BTCUSDT", "39500")                   # the replacement protects the position
        assert fx.position()[0] == 0


def test_python_binance_is_pinned_to_a_version_with_the_algo_routing():
    """python-binance routes conditional orders to the Algo Order API from 1.0.33 (changelog: "moved conditional
    orders to the new futures algo serivce (#1639)"); before it Binance refuses every TP/SL with -4120."""
    import re
    import tomllib

    from conftest import ROOT
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.replace(" ", "").startswith("python-binance"))
    low = re.search(r">=\s*([\d.]+)", pin)
    assert low and tuple(int(x) for x in low.group(1).split(".")) >= (1, 0, 33)


# ---------------------------------------------------------------------- futures error codes (item 7)
from mlrisk.live.state import NewOrder  # noqa: E402
from test_live_futures_broker import H, T0  # noqa: E402


def _pending(store, leg: str, side: str, typ: str, qty: str, price: str | None = None, reduce: bool = False,
             t: int = 1) -> str:
    c = cid(t, leg)
    store.insert_order(NewOrder(c, "BTCUSDT", side, typ, D(qty), T0 + t * H, leg,  # type: ignore[arg-type]
                                price=None if price is None else D(price), reduce_only=reduce))
    return c


@pytest.mark.parametrize("code, what, typ, qty, price", [
    (-4164, "min notional", "MARKET", "0.001", None),
    (-1111, "precision", "MARKET", "0.0015", None),
    (-4005, "quantity > max", "MARKET", "121", None),
    (-4014, "tick size", "LIMIT", "0.01", "39999.95"),
    (-4013, "price < min", "LIMIT", "1", "500"),
    (-2019, "margin insufficient", "MARKET", "100", None),
])
def test_a_refused_futures_order_says_why_in_one_line(tmp_path, code, what, typ, qty, price):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        c = _pending(store, "entry", "BUY", typ, qty, price)
        rec = b.send(c)
        assert rec.status is S.REJECTED and "\n" not in rec.reason
        assert rec.reason.startswith(f"refused by Binance ({code} {what})"), rec.reason
        assert fx.orders == []


@pytest.mark.parametrize("code, what", [(-4003, "quantity <= 0"), (-4004, "quantity < min"), (-4023, "step size")])
def test_futures_filter_codes_the_bot_cannot_reach_have_their_line_too(code, what):
    """The exchange filters the bot applies first make these unreachable with the fake's symbol; the
    venue still names them."""
    from mlrisk.live.venue import futures_refusal
    kind, line = futures_refusal(code, "Binance's message.")
    assert kind == "filters" and line == f"refused by Binance ({code} {what}): Binance's message."


def test_a_duplicate_client_id_among_open_orders_is_ours_and_recorded(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        c = _pending(store, "entry", "BUY", "LIMIT", "0.01", "39000")
        b.exchange.client.futures_create_order(symbol="BTCUSDT", side="BUY", type="LIMIT", quantity="0.01",
                                               price="39000", timeInForce="GTC", newClientOrderId=c)  # sent, answer lost
        rec = b.send(c)                                     # -4116: it is ours, open
        assert rec.status is S.OPEN and rec.exchange_order_id == fx.orders[0]["orderId"] and len(fx.orders) == 1


def _algo(b, c: str, side: str = "SELL", typ: str = "STOP_MARKET", trigger: str = "39000") -> None:
    b.exchange.client.futures_create_order(symbol="BTCUSDT", side=side, type=typ, triggerPrice=trigger,
                                           closePosition="true", workingType="CONTRACT_PRICE", clientAlgoId=c)


def test_an_existing_close_position_order_of_ours_is_adopted_not_refused(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store, PROTECTED)
        _algo(b, cid(0, "sl"))                              # ours, at the exchange, not in the state file
        c = _pending(store, "sl", "SELL", "STOP_MARKET", "0.01", "39000", reduce=True)
        rec = b.send(c)                                     # -4130
        assert rec.status is S.CANCELLED and cid(0, "sl") in rec.reason
        assert store.order(cid(0, "sl")).status is S.OPEN and len(fx.algos) == 1


def test_an_existing_close_position_order_not_ours_is_named_in_the_refusal(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store, PROTECTED)
        _algo(b, "by-hand-1")
        c = _pending(store, "sl", "SELL", "STOP_MARKET", "0.01", "39000", reduce=True)
        rec = b.send(c)
        assert rec.status is S.REJECTED and "by-hand-1" in rec.reason and "\n" not in rec.reason
        assert rec.reason.startswith("refused by Binance (-4130")


# ---------------------------------------------------------------------- positionRisk lag (item 2, futures)
from mlrisk.exchange import ExchangeClient  # noqa: E402
from mlrisk.live.execution.futures import FuturesBroker  # noqa: E402
from test_live_futures_broker import _exchange  # noqa: E402


def _lagging_broker(fx, store, bp=BP, read_lag_ms: int = 3000) -> FuturesBroker:
    b = FuturesBroker(_exchange(fx), store, "BTCUSDT", "mlr", bp, max_leverage=5.0, sleep=time.sleep,
                      read_lag_ms=read_lag_ms)
    b.setup()
    return b


def test_a_position_check_right_after_a_fill_waits_for_a_lagging_position_risk(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _lagging_broker(fx, store)
        fx.position_lag_ms = 700                            # positionRisk shows the position before the fill for 0.7 s
        c = _pending(store, "entry", "BUY", "MARKET", "0.01")
        assert b.send(c).status is S.FILLED
        b.check_position()                                  # no phantom mismatch: asked again until it shows the fill
        assert not store.risk().halted and fx.fired["position_lag"] >= 1 and _agree(fx, store) == D("0.01")


def test_a_real_mismatch_still_halts_after_the_read_lag_bound(tmp_path):
    from mlrisk.live.execution.base import PositionMismatch
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _lagging_broker(fx, store, read_lag_ms=300)
        b.exchange.client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")  # by hand
        t = time.monotonic()
        with pytest.raises(PositionMismatch):
            b.check_position()
        assert 0.25 <= time.monotonic() - t < 3 and store.risk().halted


def test_protective_orders_after_an_entry_use_the_position_once_position_risk_shows_it(tmp_path):
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED, broker=_lagging_broker(fx, store, PROTECTED))
        fx.position_lag_ms = 700
        _run(fx, bot, STOPPED, 1, 2)                        # entry filled; positionRisk still flat for 0.7 s
        assert sorted(a["orderType"] for a in fx.algos if a["algoStatus"] == "NEW") == ["STOP_MARKET",
                                                                                       "TAKE_PROFIT_MARKET"]
        assert not store.risk().halted


# ---------------------------------------------------------------------- windows and forgetting (item 6, futures)
DAY = 86_400_000


def test_an_order_filled_more_than_7_days_ago_is_recorded_with_its_fills(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        fx.trade_window = True                              # userTrades without a range: the last 7 days only
        c = _pending(store, "entry", "BUY", "LIMIT", "0.01", "39000")
        assert b.send(c).status is S.OPEN
        fx.set_price("BTCUSDT", "38900")                    # it fills; the bot is down for 8 days
        fx.clock_skew_ms += 8 * DAY
        b.refresh()
        rec = store.order(c)
        assert rec.status is S.FILLED and [f.qty for f in store.fills(c)] == [D("0.01")]
        b.check_position()
        assert _agree(fx, store) == D("0.01") and not store.risk().halted


def test_an_open_order_the_exchange_forgot_after_3_days_is_recorded_cancelled(tmp_path, monkeypatch):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        fx.order_retention = True
        c = _pending(store, "entry", "BUY", "LIMIT", "0.01", "39000")
        assert b.send(c).status is S.OPEN
        b.exchange.client.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=c)   # cancelled, unfilled
        fx.clock_skew_ms += 4 * DAY                         # Binance no longer finds it: -2013
        import mlrisk.live.execution.futures as fut
        from mlrisk.live.state import now_ms
        monkeypatch.setattr(fut, "now_ms", lambda: now_ms() + 4 * DAY)   # and 4 days pass here too
        b.refresh()
        rec = store.order(c)
        assert rec.status is S.CANCELLED and "3 days" in rec.reason and fx.fired["forgotten"] >= 1
        b.reconcile()
        assert not store.risk().halted


def test_a_young_order_the_exchange_does_not_show_yet_stays_open(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        c = _pending(store, "entry", "BUY", "LIMIT", "0.01", "39000")
        assert b.send(c).status is S.OPEN
        fx.query_lag_ms = 60_000                            # a read that trails the write: -2013 for now
        fx.clock_skew_ms += 4 * DAY                         # (a skewed exchange clock does not age it)
        fx.query_lag_ms += 4 * DAY
        b.refresh()
        assert store.order(c).status is S.OPEN


def test_user_trades_are_read_in_7_day_windows_and_1000_row_pages():
    from mlrisk.live.venue import FuturesVenue
    from test_live_venue import StubExchange

    trades = [{"id": i, "orderId": 7, "price": "1", "qty": "1", "commission": "0", "commissionAsset": "USDT",
               "time": 1000 + i, "buyer": True} for i in range(2500)]
    asked = []

    def answer(kw):
        asked.append((kw["startTime"], kw["endTime"]))
        assert kw["endTime"] - kw["startTime"] <= 7 * DAY and kw["limit"] == 1000 and "fromId" not in kw
        rows = [t for t in trades if kw["startTime"] <= t["time"] <= kw["endTime"] and t["orderId"] == int(kw["orderId"])]
        return rows[:1000]

    v = FuturesVenue(StubExchange({"futures_account_trades": answer}), "BTCUSDT")
    got = v.trades(7, since_ms=0, until_ms=20 * DAY)
    assert sorted(f.trade_id for f in got) == list(range(2500))
    assert len(asked) >= 3 + 2 and max(e for _, e in asked) >= 20 * DAY - 1   # pages, then the later windows


# ---------------------------------------------------------------------- --check-venue (Acceptance)
from fake_exchange import FakeExchange  # noqa: E402
from mlrisk.live.cli import main as live_main  # noqa: E402

KEY, SECRET = "KEYcheck0123456789abcdef", "SECRETcheck9876543210zyx"


def _check_venue(monkeypatch, capsys, tmp_path, fx, market: str) -> tuple[int, list[str]]:
    for k in [k for k in __import__("os").environ if k.startswith("MLRISK_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MLRISK_BINANCE_BASE_URL", fx.url)
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", KEY)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", SECRET)
    rc = live_main(["--mode", "testnet", "--market", market, "--symbol", "BTCUSDT", "--check-venue",
                    "--env-file", str(tmp_path / "none"), "--repo", str(tmp_path)])
    out = capsys.readouterr()
    assert KEY not in out.out + out.err and SECRET not in out.out + out.err
    return int(rc), [x for x in out.out.splitlines() if x.startswith("check-venue:")]


def test_check_venue_futures_confirms_each_assumption_read_only(monkeypatch, capsys, tmp_path):
    with FakeFuturesExchange(api_key=KEY, api_secret=SECRET, prices={"BTCUSDT": "40000"}) as fx:
        rc, lines = _check_venue(monkeypatch, capsys, tmp_path, fx, "futures")
        assert rc == 0, lines
        names = [x.split(":")[1].split()[-1] for x in lines]
        assert {"time", "filters", "account", "position-mode", "open-orders", "open-algo-orders", "order-not-found",
                "algo-not-found", "trade-window", "position"} <= set(names)
        assert all(x.startswith("check-venue: held ") for x in lines)
        assert fx.orders == [] and fx.algos == [] and fx.margin_type["BTCUSDT"] == "cross"   # nothing changed


def test_check_venue_says_which_assumption_failed_and_exits_2(monkeypatch, capsys, tmp_path):
    with FakeFuturesExchange(api_key=KEY, api_secret=SECRET, prices={"BTCUSDT": "40000"}, dual_side=True) as fx:
        rc, lines = _check_venue(monkeypatch, capsys, tmp_path, fx, "futures")
        assert rc == 2
        failed = [x for x in lines if x.startswith("check-venue: FAILED")]
        assert len(failed) == 1 and "position-mode" in failed[0] and "hedge" in failed[0]


def test_check_venue_spot(monkeypatch, capsys, tmp_path):
    with FakeExchange(api_key=KEY, api_secret=SECRET) as fx:
        rc, lines = _check_venue(monkeypatch, capsys, tmp_path, fx, "spot")
        assert rc == 0, lines
        assert {"time", "filters", "account", "open-orders", "order-not-found", "trade-window"} <= {
            x.split(":")[1].split()[-1] for x in lines}


# ---------------------------------------------------------------------- fills before their trades (item 2/5)
def test_a_fill_counts_with_its_executed_quantity_while_its_trades_lag(tmp_path):
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        fx.trade_lag_ms = 60_000                            # userTrades empty for a minute after the fill
        c = _pending(store, "entry", "BUY", "MARKET", "0.01")
        rec = b.send(c)
        assert rec.status is S.FILLED and rec.executed_qty == D("0.01") and fx.fired["trade_lag"] >= 1
        pos = store.position("BTCUSDT")
        assert (pos.quantity, pos.entry_price) == (D("0.01"), D("40000"))
        b.check_position()
        assert not store.risk().halted


def test_a_finished_algo_order_counts_while_its_actual_order_s_trades_lag(tmp_path):
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED)
        _run(fx, bot, STOPPED, 1, 2)
        assert _agree(fx, store) > 0                        # long, recorded
        fx.trade_lag_ms = 60_000
        fx.set_price("BTCUSDT", "39550")                    # the stop triggers and FINISHES; its trades lag
        bot.broker.refresh()
        sl = store.order(cid(1, "sl"))
        assert sl.status is S.FILLED and sl.executed_qty > 0
        assert store.position("BTCUSDT").quantity == 0
        bot.broker.check_position()
        assert not store.risk().halted and _agree(fx, store) == 0


def test_the_read_lag_setting_reaches_the_futures_broker(monkeypatch):
    from mlrisk.live.settings import LiveSettings
    monkeypatch.setenv("MLRISK_READ_LAG_MS", "2500")
    assert LiveSettings(_env_file=None).read_lag_ms == 2500
    assert "read_lag_ms=settings.read_lag_ms" in (__import__("conftest").ROOT / "src/mlrisk/live/app.py").read_text()


# ---------------------------------------------------------------------- unknown outcome (item 1, futures)
@pytest.mark.parametrize("status, code, execute", [(400, -1007, True), (408, -1007, False), (400, -1006, True),
                                                   (408, -1006, True), (400, -1007, False)])
def test_a_futures_execution_status_unknown_answer_is_settled_never_recorded_rejected(tmp_path, status, code, execute):
    """-1006/-1007 (HTTP 400 or 408) on a new futures order: its execution status is unknown (futures
    general-info, error codes): settled from the order query, never recorded rejected (an executed
    entry recorded rejected leaves the position unrecorded: a mismatch halt at every start)."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        c = _pending(store, "entry", "SELL", "MARKET", "0.01")
        fx.schedule("unknown", method="POST", status=status, code=code, execute=execute)
        rec = b.send(c)
        assert S.REJECTED not in [e[1] for e in store.events(c)]
        assert rec.status is (S.FILLED if execute else S.CANCELLED)
        posts = [r for r in fx.requests if (r.method, r.path) == ("POST", "/fapi/v1/order")
                 and r.query.get("newClientOrderId") == c]
        assert len(posts) == 1 and len(fx.orders_with_client_id(c)) == int(execute)
        b.check_position()
        assert _agree(fx, store) == (D("-0.01") if execute else 0) and not store.risk().halted


def test_a_triggered_algo_order_whose_actual_order_a_query_does_not_show_yet_stays_open(tmp_path):
    """The algo order names its triggered order (actualOrderId) before a query by orderId finds it (Query
    Order reads can trail the matching engine: -2013): no crash, still open; recorded once it shows."""
    with FakeFuturesExchange() as fx, _store(tmp_path) as store:
        bot = _bot(fx, store, _predict_long(), PROTECTED)
        _run(fx, bot, STOPPED, 1, 2)
        fx.query_lag_ms = 5000
        fx.set_price("BTCUSDT", "39550")                   # the stop triggers: its actual order fills at once
        assert [a["algoStatus"] for a in fx.algos if a["orderType"] == "STOP_MARKET"] == ["FINISHED"]
        bot.broker.refresh()                               # GET order by orderId: -2013 for 5 s
        assert store.order(cid(1, "sl")).status is S.OPEN and fx.fired["query_lag"] >= 1
        fx.clock_skew_ms += 6000
        bot.broker.refresh()
        sl = store.order(cid(1, "sl"))
        assert sl.status is S.FILLED and [f.price for f in store.fills(cid(1, "sl"))] == [D("39600")]
        assert _agree(fx, store) == 0


def test_the_trades_of_an_order_recorded_filled_while_they_lagged_are_recorded_once_they_appear(tmp_path):
    """A filled order's trades (ids, USDT fees) are added at the next refresh once userTrades shows them,
    once each: the state file's fills end equal to the exchange's trades."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        fx.trade_lag_ms = 5000
        c = _pending(store, "entry", "BUY", "MARKET", "0.01")
        assert b.send(c).status is S.FILLED and store.fills(c) == [] and fx.fired["trade_lag"] >= 1
        fx.clock_skew_ms += 6000                            # the trades appear
        b.refresh()
        b.refresh()                                         # idempotent
        with fx._xlock:
            traded = sorted((int(t["id"]), D(t["qty"]), D(t["commission"])) for t in fx.trades)
        assert sorted((f.trade_id, f.qty, f.commission) for f in store.fills(c)) == traded and traded
        assert _agree(fx, store) == D("0.01")


def test_an_unknown_entry_after_an_exit_is_not_a_phantom_execution_while_position_risk_lags(tmp_path):
    """A reversal: the exit fills, then the entry's answer is "execution status unknown" and it did not
    execute. positionRisk still showed the position before the exit when the entry was sent: the
    evidence must be measured from the recorded position, not that lagging read (else a phantom
    fail-closed halt: "as if the BUY executed")."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        def sleep(s: float) -> None:                        # the bot's waits move the exchange's clock
            fx.clock_skew_ms += int(s * 1000)
            b.exchange.server_time_ms()
        b = FuturesBroker(_exchange(fx), store, "BTCUSDT", "mlr", BP, max_leverage=5.0, sleep=sleep)
        b.setup()
        assert b.send(_pending(store, "entry", "SELL", "MARKET", "0.01")).status is S.FILLED
        sleep(5)
        fx.position_lag_ms = 3000                           # positionRisk trails each fill by 3 s
        assert b.send(_pending(store, "exit", "BUY", "MARKET", "0.01", reduce=True, t=2)).status is S.FILLED
        fx.schedule("unknown", method="POST", status=408, code=-1007, execute=False)
        c = _pending(store, "entry", "BUY", "MARKET", "0.01", t=2)
        assert b.send(c).status is S.CANCELLED
        assert not store.risk().halted, store.risk().halt_reason
        assert _agree(fx, store) == 0


@pytest.mark.parametrize("status, code", [(400, -1007), (408, -1006)])
def test_a_setup_request_answered_execution_status_unknown_is_sent_again(tmp_path, status, code):
    """Setting the leverage is safe to repeat: an "execution status unknown" answer (a backend timeout) is
    sent again, not a failed start."""
    with FakeFuturesExchange(prices={"BTCUSDT": "40000"}) as fx, _store(tmp_path) as store:
        b = _broker(fx, store)
        fx.schedule("unknown", method="POST", path="/fapi/v1/leverage", status=status, code=code, execute=False)
        assert f"leverage {int(BP.leverage)}" in b.setup()
        assert sum(1 for r in fx.requests if (r.method, r.path) == ("POST", "/fapi/v1/leverage")) >= 3
