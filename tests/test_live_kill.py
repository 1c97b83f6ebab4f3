"""Chaos with real deaths: ``mlrisk live --mode testnet`` runs as a subprocess against the fake spot
exchange (spot: 60 candles, long only; USDT-M futures: 50 candles, both sides at leverage 3) and is killed with SIGKILL again and again, then restarted
(each way below at least once, in a seeded random order, then a seeded random one: at most 5 deaths,
since each restart costs seconds of importing TensorFlow and loading the model):

- by the exchange itself when an order request arrives, before executing it (the bot dies between
  its write-ahead record and the exchange seeing the order) or after executing it (between the
  exchange filling the order and the bot recording the answer);
- by the exchange on a random signed request (start-up reconciliation, balances, queries);
- by the test at a random moment after a start (loading the model, reconciling, waiting);

while faults are injected as well (lost answers, timeouts, 5xx after executing, 429). The
exchange's clock is moved one candle at a time, each time the bot has committed the last closed
candle, so the bot decides every candle live (no catch-up without a decision). At the end: no
client order id was sent twice, every candle was stepped exactly once, nothing is left in flight,
and the state file's position and quote balance equal the exchange's.

The model is a tiny random LSTM whose output is centred on 0.5 over these candles, so it flips
between buying and selling (threshold 0, long only: a "short" signal sells)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from fake_binance import make_candles
from fake_exchange import FakeExchange
from test_live_testnet_cli import _pinned_repo

pytestmark = pytest.mark.slow
H = 3_600_000
HISTORY = 40                 # candles before the first decision (features, window)
KEY, SECRET = "KEYkill0123456789abcdef", "SECRETkill9876543210zyx"


def _flipping_model(root: Path, rows: list[list]) -> np.ndarray:
    """Give the pinned tiny model random weights whose P(up) over ``rows`` is centred on 0.5 (half
    the candles buy, half sell); re-pin its MD5 in dvc.lock. Returns P(up) per decidable candle."""
    import keras

    from mlrisk.data.klines import klines_from_rows
    from mlrisk.hashing import md5_file
    from mlrisk.model.inference import Predictor

    path = root / "models/model.keras"
    keras.utils.set_random_seed(3)
    model = keras.models.load_model(path)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([np.random.default_rng(7).normal(0, 1.0, w.shape).astype(w.dtype) for w in ws])
    kernel, _ = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel * 4, np.zeros(1, dtype=kernel.dtype)])
    model.save(path)
    candles = klines_from_rows(rows)
    pred = Predictor(path, root / "models/preprocess.json")
    need = pred.spec.seq_len + pred.spec.warmup
    p = np.array([pred.predict_latest(candles.iloc[i - need + 1: i + 1]) for i in range(need, len(candles))])
    logit = math.log(np.median(p) / (1 - np.median(p)))
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel, bias - logit])
    model.save(path)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for out in lock["stages"]["train"]["outs"]:
        out["md5"] = md5_file(root / out["path"])
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    return 1 / (1 + np.exp(-(np.log(p / (1 - p)) - logit)))


def _last_processed(state: Path) -> int | None:
    if not state.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT last_candle_open_ms FROM progress").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


MARKETS = {   # market: (backtest changes, candles, the order endpoint)
    "spot": ({"order_size": 0.5}, 60, "/api/v3/order"),
    "futures": ({"order_size": 0.5, "direction": "both", "leverage": 3.0}, 50, "/fapi/v1/order"),
}
WAYS = ["before_send", "after_execute", "any_request", "timer"]   # how the bot is killed (module docstring)
DEATHS = 5                   # armed starts: every way once, then a random one


@pytest.mark.parametrize("market", list(MARKETS))
def test_sigkill_at_random_points_never_duplicates_an_order_and_positions_agree(tmp_path, market):
    from fake_futures import FakeFuturesExchange
    from mlrisk.live.step import BotState
    from mlrisk.live.state import OrderStatus, StateStore

    changes, N, order_path = MARKETS[market]
    _pinned_repo(tmp_path, changes)
    first = (int(time.time() * 1000) // H - 10 * 24) * H         # the first decided candle's open (ms UTC)
    rows = make_candles(HISTORY + N + 1, start_ms=first - HISTORY * H, seed=4, price=40000.0)
    p = _flipping_model(tmp_path, rows)
    assert 0.3 < (p >= 0.5).mean() < 0.7 and (np.diff(p >= 0.5) != 0).mean() > 0.2   # it really flips
    close = {r[0]: r[4] for r in rows}

    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    with StateStore(state, symbol="BTCUSDT", interval="1h", market=market, mode="testnet") as store:
        store.commit_candle(first - H)                            # resume at the first decided candle
    rng = np.random.default_rng(2026)
    planned = [str(w) for w in rng.permutation(WAYS)]            # every way once first, then random ones
    deaths: Counter[str] = Counter()
    faults = []
    common = {"api_key": KEY, "api_secret": SECRET, "candles": {("BTCUSDT", "1h"): rows},
              "prices": {"BTCUSDT": close[first - H]}}
    exchange = (FakeExchange(balances={"USDT": "10000", "BTC": "0"}, taker_fee="0.001", **common) if market == "spot"
                else FakeFuturesExchange(wallet="10000", **common))
    with exchange as fx:
        def set_clock(forming: int) -> None:
            """The exchange's clock: 300 ms into the candle opening at ``forming``, then running."""
            fx.now_ms = forming
            fx.clock_skew_ms = forming + 300 - time.time_ns() // 1_000_000
            fx.set_price("BTCUSDT", close[forming - H])

        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url,
               "MLRISK_BINANCE_API_KEY": KEY, "MLRISK_BINANCE_API_SECRET": SECRET}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--state-file", str(state),
                "--log-file", str(log), "--kill-switch-file", str(kill), "--poll-delay-s", "0",
                "--poll-retry-s", "0.05", "--max-daily-loss", "1", "--max-drawdown", "1",
                "--max-orders-per-minute", "1200", "--env-file", str(tmp_path / "none")]

        def start(armed: bool = True) -> tuple[subprocess.Popen, float | None]:
            """Start the bot with one way to die armed (``armed``), else none."""
            way = planned.pop(0) if planned else str(rng.choice(WAYS, p=[0.3, 0.3, 0.2, 0.2]))
            with fx._xlock:
                fx.scheduled[:] = [f for f in fx.scheduled if f.kind != "kill"]
            if not armed:
                way = "none"
            if way in ("before_send", "after_execute"):
                faults.append((way, fx.schedule("kill", method="POST", path=order_path,
                                                skip=int(rng.integers(1, 5)), execute=way == "after_execute")))
            elif way == "any_request":
                faults.append((way, fx.schedule("kill", skip=int(rng.integers(0, 30)))))
            if armed and rng.random() < 0.3:                       # and a fault the bot must live through
                kind = str(rng.choice(["lost", "timeout", "error", "429"]))
                opts = {"timeout": {"delay_s": 0.5}, "error": {"execute": True}}.get(kind, {})
                faults.append((kind, fx.schedule(kind, method="POST", path=order_path,
                                                 skip=int(rng.integers(0, 4)), **opts)))
            with open(tmp_path / f"stderr-{len(faults)}-{time.monotonic_ns()}.txt", "w") as err:
                proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
            proc.err_path = err.name
            fx.kill_pid = proc.pid
            return proc, (time.monotonic() + float(rng.uniform(0.5, 8.0))) if way == "timer" else None

        forming = first + H                                        # the candle `first` is closed
        set_clock(forming)
        proc, timer = start()
        starts, deadline = 1, time.monotonic() + 600
        try:
            while True:
                assert time.monotonic() < deadline, "the chaos run took more than 10 minutes"
                if _last_processed(state) == forming - H:           # the last closed candle is committed
                    if forming - H == first + (N - 1) * H:
                        break
                    forming += H
                    set_clock(forming)
                code = proc.poll()
                if timer is not None and code is None and time.monotonic() >= timer:
                    proc.send_signal(signal.SIGKILL)
                    code = proc.wait()
                    deaths["timer"] += 1
                if code is not None:
                    err = Path(proc.err_path).read_text()
                    assert code == -signal.SIGKILL, f"the bot exited with {code}: {err[-2000:]}"
                    proc, timer = start(armed=starts < DEATHS)
                    starts += 1
                    continue
                time.sleep(0.01)
            with fx._xlock:                                        # no more deaths or faults: stop gracefully
                fx.scheduled.clear()
            if proc.poll() is not None:                            # it died after its last candle
                assert proc.returncode == -signal.SIGKILL, Path(proc.err_path).read_text()[-2000:]
                def started() -> int:
                    return sum(json.loads(x).get("event") == "start" for x in log.read_text().splitlines())

                before = started()
                proc, _ = start(armed=False)
                starts += 1
                while started() == before:                         # wait until it runs, then stop it
                    assert proc.poll() is None, Path(proc.err_path).read_text()[-2000:]
                    time.sleep(0.05)
            kill.touch()                                           # stop gracefully, state saved
            assert proc.wait(timeout=60) == 0, Path(proc.err_path).read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for way, f in faults:
            if f.kind == "kill" and f.fired:
                deaths[way] += 1

        recs = [json.loads(x) for x in log.read_text().splitlines()]
        decided = [r for r in recs if "event" not in r]
        opens = [r["open_ms"] for r in decided]
        # every candle at most once in the log (a death between the commit and the log line loses
        # the line, never repeats it), and stepped exactly once by the saved account
        assert len(opens) == len(set(opens)) and set(opens) <= {first + k * H for k in range(N)}
        assert all(r["p_up"] is not None for r in decided)         # decided live, never caught up blindly
        cids = [o["clientOrderId"] for o in fx.orders]
        assert len(cids) == len(set(cids)), Counter(cids).most_common(3)        # no duplicate order
        with StateStore(state, symbol="BTCUSDT", interval="1h", market=market, mode="testnet") as store:
            assert store.last_processed_candle() == first + (N - 1) * H
            bot_state = BotState.from_blob(store.step_state().data)
            assert bot_state.origin_ms == first and bot_state.account.next_candle == N
            assert store.orders_to_reconcile() == []
            filled = store.orders([OrderStatus.FILLED])
            assert {o.client_order_id for o in filled} == {o["clientOrderId"] for o in fx.orders if o["executedQty"] > 0}
            # the state file's fills are the exchange's trades, one for one (price, quantity, fee)
            recorded = sorted((f.trade_id, f.price, f.qty, f.commission) for o in filled for f in store.fills(o.client_order_id))
            traded = sorted((int(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), Decimal(t["commission"])) for t in fx.trades)
            assert recorded == traded
            held = store.position("BTCUSDT").quantity
            if market == "spot":
                assert held == sum(fx.balance("BTC"))
                usdt = Decimal("10000")                           # the quote balance the state file explains
                for o in filled:
                    for f in store.fills(o.client_order_id):
                        fee = f.commission if f.commission_asset == "USDT" else 0
                        usdt += (-1 if o.side == "BUY" else 1) * f.price * f.qty - fee
                assert usdt == sum(fx.balance("USDT"))
            else:
                assert held == fx.position()[0]
                assert {o.side for o in filled} == {"BUY", "SELL"} and any(r["position"]["side"] == "short" for r in decided)
    print(f"kill chaos ({market}): {N} candles, {len(cids)} orders, {starts} starts, deaths {dict(deaths)}, faults fired "
          f"{dict(Counter(k for k, f in faults if f.kind != 'kill' and f.fired))}")
    assert set(deaths) == set(WAYS) and sum(deaths.values()) >= 5, deaths   # every way of dying happened
    assert len(cids) >= 15
