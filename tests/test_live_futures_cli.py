"""``mlrisk live --mode testnet --market futures`` end to end against the fake USDT-M exchange on
127.0.0.1 in subprocesses, with the tiny pinned model of ``test_live_testnet_cli`` (it says "up")
trading the default strategy's shape (both sides, leverage 3) with a take-profit and a stop: setup
(isolated margin, leverage), the last closed candle's entry sent once, the protective algo orders
placed, the kill switch, keys never written, and a restart refused when the position changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import ROUND_FLOOR, Decimal as D

import pytest

from conftest import ROOT
from fake_binance import make_candles
from fake_futures import FakeFuturesExchange
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.live.state import StateStore
from test_live_testnet_cli import _pinned_repo, run_until_decided

pytestmark = pytest.mark.slow
H = 3_600_000


def test_futures_testnet_sets_up_sends_protects_and_fails_closed(tmp_path):
    _pinned_repo(tmp_path, {"direction": "both", "leverage": 3.0, "take_profit": 0.04, "stop_loss": 0.02})
    now = int(time.time() * 1000)
    start = (now // H - 30) * H
    rows = make_candles(31, start_ms=start, price=40000.0)
    key, secret = "KEYfutures0123456789abcdef", "SECRETfutures9876543210zyx"
    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    last_closed = start + 29 * H
    with StateStore(state, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet") as store:
        store.commit_candle(last_closed - 3 * H)
    with FakeFuturesExchange(api_key=key, api_secret=secret, candles={("BTCUSDT", "1h"): rows},
                             prices={"BTCUSDT": rows[29][4]}) as fx:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url,
               "MLRISK_BINANCE_API_KEY": key, "MLRISK_BINANCE_API_SECRET": secret}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--market", "futures", "--max-leverage", "3",
                "--state-file", str(state), "--log-file", str(log), "--kill-switch-file", str(kill),
                "--poll-retry-s", "0.2", "--env-file", str(tmp_path / "none")]
        out, err = run_until_decided(args, tmp_path, env, log, kill, 3)
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        setup = [r["action"] for r in recs if r.get("event") == "setup"]
        assert setup == ["margin type ISOLATED (set)", "leverage 3",
                         "leverage brackets: the exchange's 12 tiers equal the backtest's snapshot of 2024-10-24"]
        # trained and backtested on the perpetual (the default for this strategy), traded on futures: no candles warning
        assert not [r for r in recs if r.get("event") == "warning" and "trained on" in r.get("message", "")]
        assert fx.margin_type["BTCUSDT"] == "isolated" and fx.leverage["BTCUSDT"] == 3
        candles = [r for r in recs if "event" not in r]
        assert [r["open_ms"] for r in candles] == [last_closed - 2 * H, last_closed - H, last_closed]
        cid = make_client_order_id("mlr", "BTCUSDT", last_closed, "entry")
        assert [o["client_order_id"] for o in candles[-1]["exchange_orders"]] == [cid]
        assert [o["clientOrderId"] for o in fx.orders] == [cid]
        amt, entry = fx.position()
        close = D(rows[29][4])
        # 20 % of 10,000 USDT as margin at leverage 3 = 6,000 USDT, down to the 0.001 BTC step
        assert amt == (D(6000) / close).quantize(D("0.001"), rounding=ROUND_FLOOR) and entry == close
        tp, sl = (make_client_order_id("mlr", "BTCUSDT", last_closed, leg) for leg in ("tp", "sl"))
        assert {(a["clientAlgoId"], a["orderType"], a["algoStatus"]) for a in fx.algos} == {
            (tp, "TAKE_PROFIT_MARKET", "NEW"), (sl, "STOP_MARKET", "NEW")}
        levels = {a["clientAlgoId"]: a["triggerPrice"] for a in fx.algos}
        assert levels[tp] == (close * D("1.04")).quantize(D("0.1")) and levels[sl] == (close * D("0.98")).quantize(D("0.1"))
        with StateStore(state, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet") as store:
            assert store.order(cid).status.value == "filled" and store.position("BTCUSDT").quantity == amt
            assert store.order(tp).status.value == "open" and store.order(sl).status.value == "open"
        written = [f.read_bytes() for f in tmp_path.glob("state.sqlite*")] + [log.read_bytes()]
        for blob in written + [(out + err).encode()]:
            assert key.encode() not in blob and secret.encode() not in blob
        # a trade outside the bot: the restart refuses to trade, in one line, and sends nothing
        fx.positions["BTCUSDT"][0] = amt / 2
        kill.unlink()
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: live: position mismatch") and "futures position is" in last
        with StateStore(state, symbol="BTCUSDT", interval="1h", market="futures", mode="testnet") as store:
            assert store.risk().halted
        assert len(fx.orders) == 1 and len(fx.algos) == 2
