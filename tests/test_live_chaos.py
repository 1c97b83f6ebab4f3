"""Chaos under the exchange Binance documents, in process: the bot trades on the fake spot exchange
(240 candles, long only) and on the fake USDT-M futures exchange (100 candles, both sides, leverage
3, take-profit and stop algo orders) while

- Binance's documented behaviours are on at random in seeded epochs (tests/chaos_support.py):
  "execution status unknown" answers (-1007/-1006 as HTTP 400/408, executed or not), order queries,
  trade lists and (futures) positions that lag writes, spot MARKET orders that fill partly then
  EXPIRE, archived (-2026) orders, 24 h / 7 day list windows, forgotten futures orders, algo orders
  that stay TRIGGERING with an empty actualOrderId or end REJECTED;
- faults are injected on order requests (timeouts, lost answers, 5xx executed or not, 429, and the
  unknown-outcome answers again);
- the bot "dies" at random points: before the candle's commit, between the write-ahead and the send,
  and between the exchange executing an order and the bot recording it. Each death abandons the bot
  mid-way (its SQLite transactions are atomic; SIGKILL on the store itself is tested in
  test_live_state.py); a new bot opens the same state file, reconciles and carries on.

Time is virtual and shared: the exchange's clock is 300 ms after each candle's close when the bot
decides it (so a lag of up to an hour ends by the next candle, and day-long windows pass), every
sleep of the bot moves it on, and the bot's clock offset is measured again each time.

Asserted at the end (after one more start once every lag is over): every candle processed exactly
once; no decision executed twice (a re-sent filled client id shows as two executed exchange orders
with that id); every executed exchange order recorded with its executed quantity, and the state
file's fills equal to the exchange's trades one for one; nothing left in flight; the recorded
position equal to the exchange's (its matching engine, not a lagging read). A halt is accepted only
when the state file and the log name its reason and the chaos report shows a cause (a documented
behaviour, a fault or a death since the run began or trading last resumed after a halt); the test
then checks the exchange, lets the lag pass and starts again with the halt cleared (``--reset-halt``);
more than 3 halts in a row without a candle processed is a halt loop, which stops the run and fails.
Any other exception fails (a crash). The figures go to ``CHAOS_REPORT`` (see
tests/chaos_support.py for the knobs)."""

from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest

import chaos_support as cs
from fake_exchange import FakeExchange
from fake_futures import FakeFuturesExchange
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.exchange import ExchangeClient
from mlrisk.live.execution.base import PositionMismatch
from mlrisk.live.execution.futures import FuturesBroker
from mlrisk.live.execution.spot import ExchangeBroker
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot
from mlrisk.live.risk import RiskLimits
from mlrisk.live.state import RiskState, StateStore
from mlrisk.settings import BinanceSettings
from test_live_broker import H, _candles, _predict

pytestmark = pytest.mark.slow
MARKETS = {   # market: (strategy, default candles)
    "spot": (BacktestParams(threshold=0.1, leverage=1.0, direction="long", order_size=0.2, sweep={}), 240),
    "futures": (BacktestParams(threshold=0.1, leverage=3.0, direction="both", order_size=0.2, slippage_bps=0.0,
                               take_profit=0.02, stop_loss=0.015, sweep={}), 100),
}
FAULTS = ["timeout", "lost", "error", "error_executed", "429", "unknown"]
HALT_LOOP = 3   # halts in a row without a candle processed: a loop


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the bot catches it)."""


class HaltLoop(Exception):
    """The bot halted more than HALT_LOOP times in a row without processing a candle: the run stops."""


@pytest.mark.parametrize("market", list(MARKETS))
def test_chaos_under_documented_behaviours_never_executes_a_decision_twice_and_positions_agree(tmp_path, market):
    bp, default_n = MARKETS[market]
    n = cs.candles(default_n)
    seed = cs.seed()
    rng = np.random.default_rng([seed, list(MARKETS).index(market)])
    candles = _candles(n + 1, seed=5)
    t_first = int(candles["open_time"].iloc[0].value // 10**6)
    log = tmp_path / "bot.jsonl"
    deaths: Counter[str] = Counter()
    faults: list[tuple[str, object]] = []
    halts: list[dict] = []
    starts = 0
    fx = (FakeExchange(balances={"USDT": "10000", "BTC": "0"}) if market == "spot"
          else FakeFuturesExchange(wallet="10000"))
    with fx:
        doc = cs.Documented(fx, rng, market)
        world: dict = {"ex": None, "since": None}

        def remeasure() -> None:
            if world["ex"] is not None:
                world["ex"].server_time_ms()

        def at(ms: int) -> None:
            """The exchange's clock at ``ms`` (epoch ms), then running; the bot measures its offset again."""
            fx.clock_skew_ms = ms - time.time_ns() // 1_000_000
            remeasure()

        def sleep(s: float) -> None:
            """The bot's sleep moves the shared clock on (no real wait)."""
            fx.clock_skew_ms += int(s * 1000)
            remeasure()

        def snapshot() -> tuple:
            return dict(fx.documented_report()), sum(f.fired for _, f in faults), sum(deaths.values())

        def start(reset_halt: bool = False) -> Bot:
            nonlocal starts
            starts += 1
            store = StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", market=market, mode="testnet")
            try:
                if reset_halt:   # what `mlrisk live --reset-halt` does
                    r = store.risk()
                    store.save_risk(RiskState(r.day_start_ms, r.day_start_equity, r.peak_equity, False, ""))
                s = BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=fx.api_secret, timeout_s=0.5)
                ex = ExchangeClient(s, market=market, signed=True, max_retries=1, backoff_s=0.0, sleep=lambda s: None)
                world["ex"] = ex
                ex.server_time_ms()
                if market == "spot":
                    broker = ExchangeBroker(ex, store, "BTCUSDT", "mlr", bp.order_size, bp.min_notional, sleep=sleep)
                else:
                    broker = FuturesBroker(ex, store, "BTCUSDT", "mlr", bp, max_leverage=5.0, sleep=sleep)
                    broker.setup()
                doc.new_epoch()
                world["reconciled"] = broker.reconcile()
            except BaseException:
                store.close()
                raise
            bot = Bot(_predict, 2, 1, params_vector(bp, H), H, RiskLimits(0.0, 1.0, 1.0, 1200), store,
                      CandleLog(log, None), broker=broker)
            real_prepare, real_send_all, real_call = broker.prepare, broker.send_all, ex.call

            def prepare(*a, **k):
                if rng.random() < 0.03:
                    deaths["before_commit"] += 1
                    raise Crash
                return real_prepare(*a, **k)

            def send_all(orders):
                if orders and rng.random() < 0.08:
                    deaths["after_write_ahead"] += 1
                    raise Crash
                return real_send_all(orders)

            def call(method, /, **kw):
                out = real_call(method, **kw)
                name = method if isinstance(method, str) else getattr(method, "__name__", "")   # the venue wraps it
                if name in ("create_order", "futures_create_order") and rng.random() < 0.08:
                    deaths["after_execute"] += 1
                    raise Crash
                return out

            broker.prepare, broker.send_all, ex.call = prepare, send_all, call
            return bot

        def halted(store: StateStore, said: str, candle: int | None) -> None:
            """Record a halt: its reason in the state file and in the log (``said``: the one line the bot
            raised, as `mlrisk live` prints it), its cause in the chaos report since the run began or trading
            last resumed, and
            the exchange checked (recorded vs. the exchange's true position); then close the store and let
            the lag pass (the operator looks at the exchange before starting with --reset-halt)."""
            reason = store.risk().halt_reason
            text = said + "\n" + (log.read_text() if log.exists() else "") + "\n".join(world.get("reconciled") or [])
            rep, fired, died = world["since"] or ({}, 0, 0)
            now = snapshot()
            cause = {k: v - rep.get(k, 0) for k, v in now[0].items() if v > rep.get(k, 0)}
            cause.update({"faults": now[1] - fired} if now[1] > fired else {})
            cause.update({"deaths": now[2] - died} if now[2] > died else {})
            recorded, truth = store.position("BTCUSDT").quantity, cs.exchange_position(fx, market)
            halts.append({"candle": candle, "reason": reason, "logged": bool(reason) and reason[:60] in text,
                          "cause": cause, "recorded": str(recorded), "exchange": str(truth),
                          "phantom": recorded == truth})
            world["pending"] = True   # the cause window restarts once a candle is processed again
            store.close()
            at(fx.server_ms() + cs.lag_ms() + 1000)

        def first_start(reset: bool = False) -> Bot:
            """Start until a start neither dies nor halts (each halt recorded; a loop fails)."""
            in_a_row = 0
            while True:
                try:
                    bot = start(reset)
                except Crash:
                    deaths["at_start"] += 1
                    continue
                except PositionMismatch as e:
                    halted(StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", market=market,
                                      mode="testnet"), str(e), None)
                else:
                    if not bot.store.risk().halted:
                        return bot
                    halted(bot.store, "", None)   # halted at start without raising
                reset = True
                in_a_row += 1
                if in_a_row > HALT_LOOP:
                    raise HaltLoop(f"{in_a_row} halts in a row at start")

        at(t_first + H + 300)
        bot = first_start()
        i, since_epoch, in_a_row, stopped = 1, 0, 0, None
        while i <= n and stopped is None:
            if since_epoch >= cs.EPOCH:
                doc.new_epoch()
                since_epoch = 0
            if rng.random() < 0.06:  # a fault on a coming order request
                kind = str(rng.choice(FAULTS))
                opts = {"timeout": {"delay_s": 0.6}, "error_executed": {"execute": True},
                        "unknown": {"execute": bool(rng.random() < 0.5), "code": int(rng.choice([-1006, -1007])),
                                    "status": int(rng.choice([400, 408]))}}.get(kind, {})
                faults.append((kind, fx.schedule("error" if kind.startswith("error") else kind, method="POST",
                                                 skip=int(rng.integers(0, 3)), **opts)))
            close_ms = t_first + (i + 1) * H
            at(close_ms + 300)
            fx.set_price("BTCUSDT", f"{candles['close'].iloc[i]:.2f}")
            restart = reset = False
            try:
                bot.process(candles.iloc[: i + 1])
                if bot.store.risk().halted:   # halted without raising (entries blocked)
                    halted(bot.store, "", i)
                    restart = reset = True
            except Crash:
                bot.store.close()
                restart = True
            except PositionMismatch as e:
                halted(bot.store, str(e), i)
                restart = reset = True
            if restart:
                in_a_row = in_a_row + 1 if reset else 0
                try:
                    if in_a_row > HALT_LOOP:
                        raise HaltLoop(f"{in_a_row} halts in a row")
                    bot = first_start(reset)
                except HaltLoop as e:   # the run stops here (the figures still go to the report)
                    stopped = f"candle {i}: {e}"
                    break
            last = bot.store.last_processed_candle()
            nxt = 1 if last is None else int((last - t_first) // H) + 1
            if nxt > i:
                in_a_row = 0
                if world.pop("pending", False):   # a halt's cause: what fired since the run began or trading resumed
                    world["since"] = snapshot()
                since_epoch += nxt - i
            i = nxt

        # the end: every documented switch off, every lag over, one more start (it reconciles)
        doc.all_off()
        if stopped is None:
            bot.store.close()
            at(fx.server_ms() + max(cs.lag_ms(), H) + 1000)
            try:
                bot = first_start()
            except HaltLoop as e:
                stopped = f"final start: {e}"
        store = StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", market=market, mode="testnet") \
            if stopped else bot.store
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        opens = [r["open_ms"] for r in recs if "event" not in r]
        t0 = t_first + H
        recorded, traded = cs.fills_vs_trades(store, fx)
        held, truth = store.position("BTCUSDT").quantity, cs.exchange_position(fx, market)
        unexplained = cs.executed_vs_recorded(store, fx)
        in_flight = cs.in_flight(store, fx)
        kinds = Counter()
        for k, f in faults:
            kinds[k] += int(f.fired)
        with fx._xlock:
            executed = sum(o["executedQty"] > 0 for o in fx.orders)
            n_orders = len(fx.orders)
        figures = {
            "market": market, "seed": seed, "rate": cs.rate(), "lag_ms": cs.lag_ms(), "candles": n, "orders": n_orders,
            "executed_orders": executed, "faults": dict(kinds), "documented": fx.documented_report(),
            "documented_epochs": dict(doc.epochs), "epochs": len(doc.draws), "deaths": dict(deaths), "starts": starts,
            "duplicates": cs.duplicates(fx),
            "mismatches": {"position": int(held != truth), "fills": len(set(recorded) ^ set(traded)),
                           "orders": len(unexplained), "in_flight": len(in_flight)},
            "halts": halts, "stopped": stopped,
        }
        cs.write_report(f"chaos-{market}", figures)
        print(f"chaos ({market}): {json.dumps(figures, default=str)}")

        assert stopped is None, f"{stopped}: {halts[-HALT_LOOP:]}"
        # every candle exactly once: never decided twice (a crash between commit and log loses a line,
        # never repeats one), and the account's candle counter advanced exactly once per candle
        assert opens == sorted(set(opens)) and set(opens) <= {t0 + k * H for k in range(n)}
        assert store.last_processed_candle() == t0 + (n - 1) * H
        assert bot.state.origin_ms == t0 and bot.state.account.next_candle == n
        assert cs.duplicates(fx) == 0, {c: k for c, k in cs.executions(fx).items() if k > 1}   # no decision twice
        assert unexplained == [], unexplained[:5]             # every execution recorded with its quantity
        assert recorded == traded, sorted(set(recorded) ^ set(traded))[:5]   # the fills are the trades, one for one
        assert in_flight == []                                # nothing in flight, open only what is open
        assert held == truth, (held, truth)                   # the recorded position is the exchange's
        if market == "spot":                                  # and the quote balance the fills explain
            usdt = Decimal("10000")
            for o in store.orders():
                for f in store.fills(o.client_order_id):
                    fee = f.commission if f.commission_asset == "USDT" else 0
                    usdt += (-1 if o.side == "BUY" else 1) * f.price * f.qty - fee
            assert usdt == sum(fx.balance("USDT"))
        for h in halts:   # a halt names its reason (state file and log) and has a cause in the chaos report
            assert h["reason"] and h["logged"] and h["cause"], h
        # no halt on a read that lagged: at each halt the recorded position differed from the exchange's true one
        assert not [h for h in halts if h["phantom"]], [h for h in halts if h["phantom"]]
        assert sum(deaths.values()) >= 10 and sum(kinds.values()) >= 5 and executed >= 20, figures
        assert sum(fx.documented_report().values()) >= 5, figures    # the documented behaviours did fire
        store.close()
