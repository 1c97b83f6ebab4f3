"""Chaos with real deaths under the exchange Binance documents: ``mlrisk live --mode testnet`` runs as a
subprocess against the fake spot exchange (spot: 60 candles, long only) and the fake USDT-M futures
exchange (50 candles, both sides at leverage 3, take-profit and stop algo orders) and is killed with
SIGKILL again and again, then restarted (each way below at least once, in a seeded random order, then
a seeded random one: at most 5 armed starts, since each restart costs seconds of importing TensorFlow
and loading the model):

- by the exchange itself when an order request arrives, before executing it (the bot dies between
  its write-ahead record and the exchange seeing the order) or after executing it (between the
  exchange filling the order and the bot recording the answer);
- by the exchange on a random signed request (start-up reconciliation, balances, queries);
- by the test at a random moment after a start (loading the model, reconciling, waiting);

while faults are injected as well (lost answers, timeouts, 5xx after executing, 429, "execution
status unknown" -1007/-1006 as HTTP 400/408 executed or not) and Binance's documented behaviours are
on at random in seeded epochs (each start and every 20 candles; tests/chaos_support.py): reads that
lag writes, partial MARKET fills that expire, archived orders, list windows, forgotten futures
orders, algo orders TRIGGERING with an empty actualOrderId or REJECTED. The exchange's clock is moved
one candle at a time (300 ms after the close), each time the bot has committed the last closed
candle, so the bot decides every candle live (no catch-up without a decision); every lag and window
of the fakes is clocked on it, so a lag of up to an hour ends by the next candle.

A process may end only by SIGKILL, or by a halt whose reason the state file and the bot's log (its
stderr or the JSON log) name and whose cause the chaos report shows (since the run began or trading
last resumed after a halt); then the test checks the exchange, lets the lag pass and starts it again
with ``--reset-halt``. A bot that halts without
exiting is stopped (SIGTERM) and started the same way. Any other exit is a crash and fails; more
than 3 halts in a row without a candle committed is a halt loop and stops the run (failing).

At the end the bot is stopped, every documented switch turned off, the lags left to pass, and the
bot started once more (it reconciles) and stopped. Then: no decision executed twice (count the
exchange's executed orders per client id), every candle stepped exactly once, nothing in flight,
every executed order recorded with its executed quantity and the state file's fills equal to the
exchange's trades one for one, and the state file's position (and for spot the quote balance its
fills explain) equal to the exchange's. Figures to ``CHAOS_REPORT``; knobs in
tests/chaos_support.py (``CHAOS_CANDLES`` runs it longer).

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

import chaos_support as cs

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


def _progress(state: Path) -> tuple[int | None, bool, str]:
    """(last processed candle's open ms or None, halted, halt reason) from the state file, read-only."""
    if not state.exists():
        return None, False, ""
    try:
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT last_candle_open_ms FROM progress").fetchone()
            risk = con.execute("SELECT halted, halt_reason FROM risk").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None, False, ""
    return None if row is None else row[0], bool(risk and risk[0]), (risk[1] if risk else "") or ""


def _starts(log: Path) -> int:
    """How many times the bot logged its start (after its reconciliation)."""
    if not log.exists():
        return 0
    return log.read_text().count('{"event": "start"')   # a line may be half written: no JSON parsing


def _recorded_position(state: Path) -> Decimal | None:
    from mlrisk.live.state import StateStore

    try:
        with StateStore.open_readonly(state) as st:
            return st.position("BTCUSDT").quantity
    except Exception:  # noqa: BLE001 - a figure for the report only
        return None


MARKETS = {   # market: (backtest changes, default candles, the order endpoint)
    "spot": ({"order_size": 0.5}, 60, "/api/v3/order"),
    "futures": ({"order_size": 0.5, "direction": "both", "leverage": 3.0, "take_profit": 0.015, "stop_loss": 0.01}, 50,
                "/fapi/v1/order"),
}
WAYS = ["before_send", "after_execute", "any_request", "timer"]   # how the bot is killed (module docstring)
DEATHS = 5                   # armed starts: every way once, then a random one
# Time scaled down from the defaults (recvWindow 5 s < CHAOS_LAG_MS 10 s < read lag 15 s), which here
# run on the real clock: the bot's recvWindow 1 s < reads lagging 2.5 s (CHAOS_LAG_MS overrides it) <
# the bot's read lag, 1.5 times the lag (futures asks positionRisk again for the read lag alone).
RECV_WINDOW_MS, LAG_MS = 1000, 2500
HALT_LOOP = 3                # halts in a row without a candle committed: a loop


@pytest.mark.parametrize("market", list(MARKETS))
def test_sigkill_at_random_points_never_duplicates_an_order_and_positions_agree(tmp_path, market):
    from fake_futures import FakeFuturesExchange
    from mlrisk.live.step import BotState
    from mlrisk.live.state import StateStore

    changes, default_n, order_path = MARKETS[market]
    N = cs.candles(default_n)
    seed = cs.seed()
    _pinned_repo(tmp_path, changes)
    first = (int(time.time() * 1000) // H - max(10 * 24, N + 24)) * H   # the first decided candle's open (ms UTC)
    rows = make_candles(HISTORY + N + 1, start_ms=first - HISTORY * H, seed=4, price=40000.0)
    p = _flipping_model(tmp_path, rows)
    assert 0.3 < (p >= 0.5).mean() < 0.7 and (np.diff(p >= 0.5) != 0).mean() > 0.2   # it really flips
    close = {r[0]: r[4] for r in rows}

    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    with StateStore(state, symbol="BTCUSDT", interval="1h", market=market, mode="testnet") as store:
        store.commit_candle(first - H)                            # resume at the first decided candle
    rng = np.random.default_rng([seed, list(MARKETS).index(market)])
    planned = [str(w) for w in rng.permutation(WAYS)]            # every way once first, then random ones
    deaths: Counter[str] = Counter()
    faults = []
    halts: list[dict] = []
    common = {"api_key": KEY, "api_secret": SECRET, "candles": {("BTCUSDT", "1h"): rows},
              "prices": {"BTCUSDT": close[first - H]}}
    exchange = (FakeExchange(balances={"USDT": "10000", "BTC": "0"}, taker_fee="0.001", **common) if market == "spot"
                else FakeFuturesExchange(wallet="10000", **common))
    with exchange as fx:
        lag = cs.lag_ms(LAG_MS)
        doc = cs.Documented(fx, rng, market, lag)

        def set_clock(forming: int) -> None:
            """The exchange's clock: 300 ms into the candle opening at ``forming``, then running."""
            fx.now_ms = forming
            fx.clock_skew_ms = forming + 300 - time.time_ns() // 1_000_000
            fx.set_price("BTCUSDT", close[forming - H])

        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url,
               "MLRISK_RECV_WINDOW_MS": str(RECV_WINDOW_MS), "MLRISK_READ_LAG_MS": str(lag * 3 // 2),
               "MLRISK_BINANCE_API_KEY": KEY, "MLRISK_BINANCE_API_SECRET": SECRET}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--state-file", str(state),
                "--log-file", str(log), "--kill-switch-file", str(kill), "--poll-delay-s", "0",
                "--poll-retry-s", "0.05", "--max-daily-loss", "1", "--max-drawdown", "1",
                "--max-orders-per-minute", "1200", "--env-file", str(tmp_path / "none")]
        since: dict = {}

        def snapshot() -> tuple:
            return (dict(fx.documented_report()), sum(f.fired for k, f in faults if f.kind != "kill"),
                    sum(deaths.values()) + sum(f.fired for k, f in faults if f.kind == "kill"))

        def start(armed: bool = True, reset_halt: bool = False) -> tuple[subprocess.Popen, float | None]:
            """Start the bot with one way to die armed (``armed``), else none; ``reset_halt``: --reset-halt."""
            way = planned.pop(0) if planned and armed else str(rng.choice(WAYS, p=[0.3, 0.3, 0.2, 0.2]))
            with fx._xlock:
                fx.scheduled[:] = [f for f in fx.scheduled if f.kind != "kill"]
            if not armed:
                way = "none"
            else:
                doc.new_epoch()
            if way in ("before_send", "after_execute"):
                faults.append((way, fx.schedule("kill", method="POST", path=order_path,
                                                skip=int(rng.integers(1, 5)), execute=way == "after_execute")))
            elif way == "any_request":
                faults.append((way, fx.schedule("kill", skip=int(rng.integers(0, 30)))))
            if armed and rng.random() < 0.4:                       # and a fault the bot must live through
                kind = str(rng.choice(["lost", "timeout", "error", "429", "unknown"]))
                opts = {"timeout": {"delay_s": 0.5}, "error": {"execute": True},
                        "unknown": {"execute": bool(rng.random() < 0.5), "code": int(rng.choice([-1006, -1007])),
                                    "status": int(rng.choice([400, 408]))}}.get(kind, {})
                faults.append((kind, fx.schedule(kind, method="POST", path=order_path,
                                                 skip=int(rng.integers(0, 4)), **opts)))
            with open(tmp_path / f"stderr-{len(faults)}-{time.monotonic_ns()}.txt", "w") as err:
                proc = subprocess.Popen(args + (["--reset-halt"] if reset_halt else []), cwd=tmp_path, env=env,
                                        stdout=subprocess.DEVNULL, stderr=err)
            proc.err_path = err.name
            fx.kill_pid = proc.pid
            return proc, (time.monotonic() + float(rng.uniform(0.5, 8.0))) if way == "timer" else None

        def halted(proc: subprocess.Popen, how: str, reason: str) -> None:
            """Record a halt: its reason in the state file and the bot's log, its cause in the chaos report since
            the run began or trading last resumed, the exchange checked (recorded vs. true position); then let
            the lag pass."""
            text = Path(proc.err_path).read_text() + (log.read_text() if log.exists() else "")
            rep, now = since.get("report", {}), snapshot()
            cause = {k: v - rep.get(k, 0) for k, v in now[0].items() if v > rep.get(k, 0)}
            cause.update({"faults": now[1] - since["faults"]} if now[1] > since["faults"] else {})
            cause.update({"deaths": now[2] - since["deaths"]} if now[2] > since["deaths"] else {})
            recorded, truth = _recorded_position(state), cs.exchange_position(fx, market)
            halts.append({"candle": _progress(state)[0], "how": how, "reason": reason,
                          "logged": bool(reason) and reason[:60] in text, "cause": cause, "recorded": str(recorded),
                          "exchange": str(truth), "phantom": recorded == truth})
            since["pending"] = True          # the window restarts once a candle is committed again
            fx.clock_skew_ms += min(lag + 1000, H // 2)    # the operator checks; the lag passes

        def ended(proc: subprocess.Popen, code: int) -> str | None:
            """After an exit that was not a SIGKILL: None for a halt (recorded), else why it is a crash."""
            _, is_halted, reason = _progress(state)
            if is_halted:
                halted(proc, f"exit {code}", reason)
                return None
            return f"the bot exited with {code} without a halt: {Path(proc.err_path).read_text()[-2000:]}"

        forming = first + H                                        # the candle `first` is closed
        set_clock(forming)
        since.update(zip(("report", "faults", "deaths"), snapshot()))
        proc, timer = start()
        starts, in_a_row, stopped, crashed, candles_in_epoch, awaiting_reset = 1, 0, None, None, 0, 0
        restarts = Counter()
        deadline = time.monotonic() + 600 + 6 * N
        try:
            while True:
                assert time.monotonic() < deadline, "the chaos run took too long"
                last, is_halted, reason = _progress(state)
                if last == forming - H:                            # the last closed candle is committed
                    in_a_row = 0
                    if since.pop("pending", False):               # a halt's cause: what fired since the run
                        since.update(zip(("report", "faults", "deaths"), snapshot()))   # began or trading resumed
                    if forming - H == first + (N - 1) * H:
                        break
                    forming += H
                    set_clock(forming)
                    candles_in_epoch += 1
                    if candles_in_epoch >= cs.EPOCH:
                        doc.new_epoch()
                        candles_in_epoch = 0
                code = proc.poll()
                if timer is not None and code is None and time.monotonic() >= timer:
                    proc.send_signal(signal.SIGKILL)
                    code = proc.wait()
                    deaths["timer"] += 1
                reset = False
                if awaiting_reset and (not is_halted or _starts(log) >= awaiting_reset):
                    awaiting_reset = 0                             # --reset-halt ran (or the bot is up)
                if code is None and is_halted and not awaiting_reset:
                    try:                                           # a halt that exits: let it write its line
                        code = proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:              # halted, still running: stop it gracefully
                        halted(proc, "running", reason)
                        proc.send_signal(signal.SIGTERM)
                        code, reset = proc.wait(timeout=60), True
                if code is not None and code != -signal.SIGKILL and not reset:
                    crashed = ended(proc, code)
                    if crashed:
                        break
                    reset = True
                if code is not None:
                    if reset:
                        in_a_row += 1
                        restarts["halt"] += 1
                        if in_a_row > HALT_LOOP:
                            stopped = f"{in_a_row} halts in a row at candle {_progress(state)[0]}"
                            break
                    else:
                        restarts["death"] += 1
                    awaiting_reset = _starts(log) + 1 if reset else 0   # the old halt flag stands until it resets
                    proc, timer = start(armed=starts < DEATHS, reset_halt=reset)
                    starts += 1
                    continue
                time.sleep(0.01)
            # the end: stop, every documented switch off, the lags pass, one more start (it reconciles), stop
            doc.all_off()
            for _ in range(HALT_LOOP + 1):
                if stopped or crashed:
                    break
                if proc.poll() is None:
                    kill.touch()                                   # stop gracefully, state saved
                    code = proc.wait(timeout=60)
                else:
                    code = proc.returncode
                if code not in (0, -signal.SIGKILL) and ended(proc, code) is not None:
                    crashed = ended(proc, code)
                    break
                if code == 0 and _progress(state)[1] and restarts["final"]:   # halted, stopped by the kill switch
                    halted(proc, "final", _progress(state)[2])
                if restarts["final"]:                              # the final start ran and stopped
                    if code == 0 and not _progress(state)[1]:
                        break
                kill.unlink(missing_ok=True)
                fx.clock_skew_ms += min(lag + 1000, H // 2)
                before = _starts(log)
                proc, timer = start(armed=False, reset_halt=_progress(state)[1])
                starts += 1
                restarts["final"] += 1
                while _starts(log) == before:
                    if proc.poll() is not None:                    # halted at its reconciliation (or crashed)
                        break
                    assert time.monotonic() < deadline, "the final start took too long"
                    time.sleep(0.05)
            else:
                stopped = stopped or "the final start halted in a loop"
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
        with StateStore(state, symbol="BTCUSDT", interval="1h", market=market, mode="testnet") as store:
            recorded, traded = cs.fills_vs_trades(store, fx)
            held, truth = store.position("BTCUSDT").quantity, cs.exchange_position(fx, market)
            unexplained = cs.executed_vs_recorded(store, fx)
            with fx._xlock:
                n_orders, executed = len(fx.orders), sum(o["executedQty"] > 0 for o in fx.orders)
            in_flight = cs.in_flight(store, fx)
            usdt = Decimal("10000")                               # the quote balance the state file explains
            for o in store.orders():
                for f in store.fills(o.client_order_id):
                    fee = f.commission if f.commission_asset == "USDT" else 0
                    usdt += (-1 if o.side == "BUY" else 1) * f.price * f.qty - fee
            last = store.last_processed_candle()
            step = store.step_state()
            filled_sides = {o.side for o in store.orders() if o.executed_qty > 0}
        figures = {
            "market": market, "seed": seed, "rate": cs.rate(), "lag_ms": lag, "candles": N,
            "candles_done": None if last is None else (last - first) // H + 1, "orders": n_orders,
            "executed_orders": executed,
            "faults": dict(Counter(k for k, f in faults if f.kind != "kill" and f.fired)),
            "documented": fx.documented_report(), "documented_epochs": dict(doc.epochs), "epochs": len(doc.draws),
            "deaths": dict(deaths), "starts": starts, "restarts": dict(restarts), "duplicates": cs.duplicates(fx),
            "mismatches": {"position": int(held != truth), "fills": len(set(recorded) ^ set(traded)),
                           "orders": len(unexplained), "in_flight": len(in_flight),
                           "quote": int(market == "spot" and usdt != sum(fx.balance("USDT")))},
            "halts": halts, "stopped": stopped, "crashed": crashed,
        }
        cs.write_report(f"kill-{market}", figures)
    print(f"kill chaos ({market}): {json.dumps(figures, default=str)}")
    assert crashed is None, crashed                               # the process ends only where killed or halted
    assert stopped is None, f"{stopped}: {halts[-HALT_LOOP:]}"
    # every candle at most once in the log (a death between the commit and the log line loses
    # the line, never repeats it), and stepped exactly once by the saved account
    assert len(opens) == len(set(opens)) and set(opens) <= {first + k * H for k in range(N)}
    assert all(r["p_up"] is not None for r in decided)         # decided live, never caught up blindly
    assert cs.duplicates(fx) == 0, {c: k for c, k in cs.executions(fx).items() if k > 1}   # no decision twice
    assert last == first + (N - 1) * H
    bot_state = BotState.from_blob(step.data)
    assert bot_state.origin_ms == first and bot_state.account.next_candle == N
    assert in_flight == []                                     # nothing in flight, open only what is open
    assert unexplained == [], unexplained[:5]                  # every execution recorded with its quantity
    assert recorded == traded, sorted(set(recorded) ^ set(traded))[:5]   # the fills are the trades, one for one
    assert held == truth, (held, truth)                        # the recorded position is the exchange's
    if market == "spot":
        assert usdt == sum(fx.balance("USDT"))
    else:
        assert filled_sides == {"BUY", "SELL"} and any(r["position"]["side"] == "short" for r in decided)
    for h in halts:   # a halt names its reason (state file and log) and has a cause in the chaos report
        assert h["reason"] and h["logged"] and h["cause"], h
    # no halt on a read that lagged: at each halt the recorded position differed from the exchange's true one
    assert not [h for h in halts if h["phantom"]], [h for h in halts if h["phantom"]]
    # the process exits only where killed (or halted): every restart follows a death, a halt or the final stop
    assert starts - 1 == restarts["death"] + restarts["halt"] + restarts["final"]
    assert restarts["death"] == sum(deaths.values()), (dict(restarts), dict(deaths))
    assert set(deaths) == set(WAYS) and sum(deaths.values()) >= 5, deaths   # every way of dying happened
    assert executed >= 15
