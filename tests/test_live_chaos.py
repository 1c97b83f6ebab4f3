"""Chaos: the bot trades a few hundred candles on the fake spot exchange while faults are injected
(timeouts, lost answers, 5xx, 429, executed-but-5xx) and the bot "dies" at random points: before
the candle's commit, between the write-ahead and the send, and between the exchange executing an
order and the bot recording it. Each death abandons the bot mid-way (its SQLite transactions are
atomic; SIGKILL on the store itself is tested in test_live_state.py); a new bot opens the same
state file, reconciles and carries on. At the end: no duplicate order at the exchange, every
candle processed exactly once, and the state file's position equal to the exchange's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fake_exchange import FakeExchange
from mlrisk.exchange import ExchangeOutcomeUnknown
from test_live_broker import BP, H, _candles, _exchange, _predict, _store
from mlrisk.backtest.runner import params_vector
from mlrisk.live.execution.spot import ExchangeBroker
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot
from mlrisk.live.risk import RiskLimits
from mlrisk.live.state import OrderStatus

pytestmark = pytest.mark.slow
N = 240


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the bot catches it)."""


def test_chaos_faults_and_crashes_leave_no_duplicates_and_agreeing_positions(tmp_path):
    rng = np.random.default_rng(11)
    candles = _candles(N + 1, seed=5)
    log = tmp_path / "bot.jsonl"
    counts = {"crash_before_commit": 0, "crash_after_write_ahead": 0, "crash_after_execute": 0, "restarts": 0}
    faults = []
    with FakeExchange(balances={"USDT": "10000", "BTC": "0"}) as fx:

        def start() -> Bot:
            store = _store(tmp_path)
            ex = _exchange(fx)
            broker = ExchangeBroker(ex, store, "BTCUSDT", "mlr", BP.order_size, BP.min_notional, sleep=lambda s: None)
            broker.reconcile()
            bot = Bot(_predict, 2, 1, params_vector(BP, H), H, RiskLimits(0.0, 1.0, 1.0, 1200), store,
                      CandleLog(log, None), broker=broker)
            real_prepare, real_send_all, real_call = broker.prepare, broker.send_all, ex.call

            def prepare(*a, **k):
                if rng.random() < 0.03:
                    counts["crash_before_commit"] += 1
                    raise Crash
                return real_prepare(*a, **k)

            def send_all(orders):
                if orders and rng.random() < 0.08:
                    counts["crash_after_write_ahead"] += 1
                    raise Crash
                return real_send_all(orders)

            def call(method, /, **kw):
                out = real_call(method, **kw)
                if method == "create_order" and rng.random() < 0.08:
                    counts["crash_after_execute"] += 1
                    raise Crash
                return out

            broker.prepare, broker.send_all, ex.call = prepare, send_all, call
            return bot

        bot = start()
        i = 1
        while i <= N:
            if rng.random() < 0.05:  # a fault on the next order request
                kind = str(rng.choice(["timeout", "lost", "error", "error_executed", "429"]))
                opts = {"timeout": {"delay_s": 0.6}, "error_executed": {"execute": True}}.get(kind, {})
                faults.append((kind, fx.schedule("error" if kind.startswith("error") else kind, method="POST", **opts)))
            fx.set_price("BTCUSDT", f"{candles['close'].iloc[i]:.2f}")
            try:
                bot.process(candles.iloc[: i + 1])
            except Crash:
                bot.store.close()
                counts["restarts"] += 1
                bot = start()
            except ExchangeOutcomeUnknown:  # pragma: no cover - the broker settles these itself
                raise
            last = bot.store.last_processed_candle()
            i = 1 if last is None else int((last - int(candles["open_time"].iloc[0].value // 10**6)) // H) + 1
        bot.broker.reconcile()
        store = bot.store
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        opens = [r["open_ms"] for r in recs]
        t0 = int(candles["open_time"].iloc[1].value // 10**6)
        # every candle exactly once: never decided twice (a crash between commit and log loses a line,
        # never repeats one), and the account's candle counter advanced exactly once per candle
        assert opens == sorted(set(opens)) and set(opens) <= {t0 + k * H for k in range(N)}
        assert store.last_processed_candle() == t0 + (N - 1) * H
        assert bot.state.origin_ms == t0 and bot.state.account.next_candle == N
        cids = [o["clientOrderId"] for o in fx.orders]
        assert len(cids) == len(set(cids))                                   # no duplicate order
        assert {o.client_order_id for o in store.orders([OrderStatus.FILLED])} == set(cids)
        assert store.orders_to_reconcile() == []
        assert store.position("BTCUSDT").quantity == bot.broker.exchange_position() == sum(fx.balance("BTC"))
        fired = sum(f.fired for _, f in faults)
        kinds = {k: sum(f.fired for kk, f in faults if kk == k) for k, _ in faults}
        print(f"chaos: {N} candles, {len(cids)} orders, faults fired {kinds}, {counts}")
        assert counts["restarts"] >= 10 and fired >= 5 and len(cids) >= 20
        store.close()
