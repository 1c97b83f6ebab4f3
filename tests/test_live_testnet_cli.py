"""``mlrisk live --mode testnet`` end to end against the fake spot exchange on 127.0.0.1, with a tiny
pinned model (a 4-unit LSTM whose output bias makes it say "up"), in subprocesses: catching up after a
restart sends only the last closed candle's decision, written ahead with its client id; the kill
switch stops it; a position the exchange cannot explain refuses to start; keys are never written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from fake_exchange import FakeExchange
from fake_binance import make_candles
from mlrisk.live.client_ids import make_client_order_id
from mlrisk.hashing import md5_file
from mlrisk.live.state import StateStore

pytestmark = pytest.mark.slow
H = 3_600_000


def _pinned_repo(root: Path, backtest: dict | None = None) -> None:
    """models/, params.yaml (spot, long only, leverage 1; ``backtest`` changes it, and a strategy that shorts or
    levers is fetched on futures, as the shipped default) and a dvc.lock pinning them."""
    from mlrisk.config.params import load_params
    from mlrisk.data.preprocess import PreprocessSpec
    from mlrisk.features import warmup
    from mlrisk.model.network import build_model, save_model

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["backtest"].update({"direction": "long", "leverage": 1.0, "threshold": 0.0, "order_size": 0.2, **(backtest or {})})
    futures = params["backtest"]["direction"] != "long" or params["backtest"]["leverage"] > 1
    params["data"]["market"] = "futures" if futures else "spot"
    params["features"]["seq_len"] = 4
    params["train"].update({"layers": [{"type": "lstm", "units": 4}], "dense": [4]})
    (root / "models").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = load_params(root / "params.yaml")
    names = p.features.names
    spec = PreprocessSpec(features=list(names), seq_len=4, warmup=warmup(list(names)), mean=[0.0] * len(names),
                          scale=[1.0] * len(names), label=p.features.label.model_dump(), n_classes=2, interval="1h")
    spec.save(root / "models/preprocess.json")
    model = build_model(p.train, 4, len(names))
    w = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.zeros_like(w[0]), np.full_like(w[1], 5.0)])  # P(up) ~ 0.99
    save_model(model, root / "models/model.keras")
    (root / "models/model.json").write_text(json.dumps({"preprocess": spec.to_json()}))
    md5 = {f: md5_file(root / f) for f in ("models/model.keras", "models/preprocess.json", "models/model.json")}
    lock = {"schema": "2.0", "stages": {
        "preprocess": {"params": {"params.yaml": {"data.symbol": "BTCUSDT"}},
                       "outs": [{"path": "models/preprocess.json", "md5": md5["models/preprocess.json"]}]},
        "train": {"outs": [{"path": f, "md5": md5[f]} for f in ("models/model.keras", "models/model.json")]},
        "backtest": {"params": {"params.yaml": {"backtest": params["backtest"]}}}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))


def run_until_decided(args: list[str], cwd: Path, env: dict[str, str], log: Path, kill: Path, n: int) -> tuple[str, str]:
    """Run the bot (``args``) until its log holds ``n`` candle lines (90 s at most), then stop it with
    the kill switch file; asserts it exited 0. Returns (stdout, stderr)."""
    p = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        recs = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        if sum("event" not in r for r in recs) >= n or p.poll() is not None:
            break
        time.sleep(0.2)
    kill.touch()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return out, err


def test_testnet_mode_sends_written_ahead_orders_and_fails_closed(tmp_path):
    _pinned_repo(tmp_path)
    now = int(time.time() * 1000)
    start = (now // H - 30) * H
    rows = make_candles(31, start_ms=start, price=40000.0)          # the last one is forming now
    key, secret = "KEYtestnet0123456789abcdef", "SECRETtestnet9876543210zyx"
    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    last_closed = start + 29 * H
    with StateStore(state, symbol="BTCUSDT", interval="1h", mode="testnet") as store:
        store.commit_candle(last_closed - 3 * H)                     # the bot was down for three candles
    with FakeExchange(api_key=key, api_secret=secret, candles={("BTCUSDT", "1h"): rows},
                      prices={"BTCUSDT": rows[29][4]}, balances={"USDT": "10000", "BTC": "0"}) as fx:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url,
               "MLRISK_BINANCE_API_KEY": key, "MLRISK_BINANCE_API_SECRET": secret}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--state-file", str(state), "--log-file",
                str(log), "--kill-switch-file", str(kill), "--poll-retry-s", "0.2", "--env-file", str(tmp_path / "none")]
        out, err = run_until_decided(args, tmp_path, env, log, kill, 3)
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        candles = [r for r in recs if "event" not in r]
        assert [r["open_ms"] for r in candles] == [last_closed - 2 * H, last_closed - H, last_closed]
        # catch-up candles are stepped without a decision; the last closed candle's entry is sent, once
        assert [r["p_up"] is None for r in candles] == [True, True, False] and candles[-1]["p_up"] > 0.9
        assert candles[0]["exchange_orders"] == [] and "catch-up" in candles[0]["blocked"][0]
        cid = make_client_order_id("mlr", "BTCUSDT", last_closed, "entry")
        assert [o["client_order_id"] for o in candles[-1]["exchange_orders"]] == [cid]
        assert candles[-1]["exchange_orders"][0]["status"] == "filled"
        assert [o["clientOrderId"] for o in fx.orders] == [cid]
        assert recs[-1]["event"] == "stop" and "kill switch" in recs[-1]["reason"]
        with StateStore(state, symbol="BTCUSDT", interval="1h", mode="testnet") as store:
            assert store.order(cid).status.value == "filled"
            assert store.position("BTCUSDT").quantity == sum(fx.balance("BTC")) > 0
        written = [f.read_bytes() for f in tmp_path.glob("state.sqlite*")] + [log.read_bytes()]
        for blob in written + [(out + err).encode()]:
            assert key.encode() not in blob and secret.encode() not in blob
        # someone sells the bot's coins: the restart refuses to trade, in one line, and the halt persists
        fx.balances["BTC"][0] = fx.balances["BTC"][0] / 2
        kill.unlink()
        r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: live: position mismatch") and "account holds only" in last
        with StateStore(state, symbol="BTCUSDT", interval="1h", mode="testnet") as store:
            assert store.risk().halted
        assert len(fx.orders) == 1


def test_paper_mode_stops_with_exit_code_3_when_the_feed_stalls(tmp_path):
    _pinned_repo(tmp_path)
    now = int(time.time() * 1000)
    hour = now // H * H
    rows = make_candles(30, start_ms=hour - 30 * H)          # nothing after the previous hour
    # the exchange's clock: 10 min before the hour ends while the bot loads the model and its history, then,
    # once it has read the history (and so waits for the close, checking the exchange's clock every 0.5 s),
    # 1 s before the close: the candle never comes
    with FakeExchange(candles={("BTCUSDT", "1h"): rows}, clock_skew_ms=hour + H - 600_000 - now) as fx:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLRISK_BINANCE_BASE_URL": fx.url}
        proc = subprocess.Popen([sys.executable, "-m", "mlrisk.live", "--state-file", str(tmp_path / "s.sqlite"),
                                 "--log-file", str(tmp_path / "bot.jsonl"), "--kill-switch-file", str(tmp_path / "STOP"),
                                 "--poll-delay-s", "0", "--poll-retry-s", "0.5", "--max-stale-s", "2",
                                 "--env-file", str(tmp_path / "none")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not fx.kline_requests() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        fx.clock_skew_ms = hour + H - 1000 - int(time.time() * 1000)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert r.returncode == 3, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: live: no candle closing at") and "MLRISK_MAX_STALE_S" in last
    assert "is late" in r.stderr  # it warned and retried first
