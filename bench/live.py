"""Benchmark: the live bot's decision latency and replay throughput, on CPU, with the pinned model.

Latency: from the moment a candle's close is available at the exchange (the local fake Binance
on 127.0.0.1 moves its clock past the close) to the paper decision being committed and logged:
one server-time request, one klines request, features, the scaler, the compiled single-window
inference, the backtest's per-candle step, the risk controls, the SQLite commit and the log line.
With ``--websocket``: from the fake kline stream sending the candle's closing event to the same
decision (no REST request). Testnet/live: from the close to the candle's orders written ahead, sent to the fake spot exchange
and acknowledged (the free balance queried, the filters applied); the same on the fake USDT-M futures
exchange with the pinned strategy (refresh of open orders and the positionRisk check included). Replay: candles per second
through the same loop from the stored raw candles. Needs the
pipeline's outputs (``dvc repro``). Prints figures; asserts nothing.

    python bench/live.py [--candles 200] [--repo .]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(ROOT))
    ap.add_argument("--candles", type=int, default=200)
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU figures
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_binance import FakeBinance

    from mlrisk.backtest.runner import params_vector
    from mlrisk.exchange import ExchangeClient
    from mlrisk.live.feeds.polling import PollingFeed
    from mlrisk.live.feeds.replay import read_candle_file
    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import Bot, Stopper, run_replay
    from mlrisk.live.model import pin_model
    from mlrisk.live.risk import RiskLimits
    from mlrisk.live.state import StateStore
    from mlrisk.model.inference import Predictor
    from mlrisk.settings import BinanceSettings
    from mlrisk.times import INTERVAL_MS

    model = pin_model(args.repo)
    iv = INTERVAL_MS[model.interval]
    pred = Predictor(model.model_path, model.spec_path)
    spec = pred.spec
    candles = read_candle_file(Path(args.repo) / f"data/raw/{model.symbol}-{model.interval}.parquet", iv)
    prm = params_vector(model.backtest, iv)
    limits = RiskLimits(0.0, 1.0, 1.0, 1200)
    print(f"model {model.symbol} {model.interval}, window {spec.seq_len}x{len(spec.features)}, "
          f"{os.cpu_count()} cores, CPU")

    rows = [[int(t.value // 10**6), repr(o), repr(h), repr(lo), repr(c), repr(v), int(t.value // 10**6) + iv - 1,
             "0", 0, "0", "0", "0"] for t, o, h, lo, c, v in
            candles[["open_time", "open", "high", "low", "close", "volume"]].itertuples(index=False)]
    first = len(rows) - args.candles - 1
    t_first = rows[first][0]
    lat = []
    with tempfile.TemporaryDirectory() as tmp, FakeBinance({(model.symbol, model.interval): rows},
                                                           now_ms=t_first + 1) as fb:
        # the fake writes headers and body separately: without TCP_NODELAY each answer waits ~40 ms for a
        # delayed ACK, an artefact of the test server, not of the bot or of Binance
        store = StateStore(Path(tmp) / "s.sqlite", symbol=model.symbol, interval=model.interval)
        bot = Bot(pred.predict_latest, spec.seq_len + spec.warmup, spec.seq_len, prm, iv, limits, store,
                  CandleLog(Path(tmp) / "bot.jsonl", None))
        ex = ExchangeClient(BinanceSettings(base_url=fb.url), market="spot")
        feed = PollingFeed(ex, model.symbol, model.interval, iv, poll_delay_s=0.0, stop=Stopper(None))
        hist = feed.history(t_first - (bot.need + 2) * iv)
        nxt = t_first
        import pandas as pd

        for i in range(args.candles):
            fb.now_ms = nxt + iv + 1          # the close is available now
            t0 = time.perf_counter()
            new = feed.wait_for(nxt)
            t1 = time.perf_counter()
            hist = pd.concat([hist, new], ignore_index=True).iloc[-(bot.need + 8):]
            bot.process(hist)
            t2 = time.perf_counter()
            lat.append(((t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000))
            nxt += iv
        store.close()
    lat = np.array(lat[5:])  # the first calls trace the graph
    for j, what in enumerate(("paper decision latency (close available -> decision committed and logged)",
                              "  of which polling (server time + klines over HTTP to 127.0.0.1)",
                              "  of which deciding (features, inference, step, risk, SQLite commit, log)")):
        print(f"{what}, {len(lat)} candles: median {np.median(lat[:, j]):.1f} ms, p99 {np.percentile(lat[:, j], 99):.1f} ms")

    # the same with --websocket: the fake kline stream sends each candle's closing event, the socket feed
    # hands it over without a REST request (REST polling stays the fallback, 60 s after the close here)
    from fake_kline_ws import FakeKlineWS

    from mlrisk.live.feeds.websocket import SocketFeed

    lat_ws = []
    with tempfile.TemporaryDirectory() as tmp, FakeBinance({(model.symbol, model.interval): rows}, now_ms=t_first + 1) as fb, \
            FakeKlineWS(model.symbol, model.interval, iv, heartbeat_s=None) as ws:
        store = StateStore(Path(tmp) / "w.sqlite", symbol=model.symbol, interval=model.interval)
        bot = Bot(pred.predict_latest, spec.seq_len + spec.warmup, spec.seq_len, prm, iv, limits, store,
                  CandleLog(Path(tmp) / "w.jsonl", None))
        ex = ExchangeClient(BinanceSettings(base_url=fb.url), market="spot")
        feed = SocketFeed(PollingFeed(ex, model.symbol, model.interval, iv, poll_delay_s=60.0, stop=Stopper(None)), ws.url)
        hist = feed.history(t_first - (bot.need + 2) * iv)
        if not ws.wait_connections(1):
            raise SystemExit(f"the bench's websocket did not connect: {feed.state}")
        n_rest = len(fb.kline_requests())
        nxt = t_first
        for i in range(args.candles):
            fb.now_ms = nxt + iv + 1
            t0 = time.perf_counter()
            ws.send_candle(rows[first + i], partials=0)   # the close, as the stream announces it
            new = feed.wait_for(nxt)
            t1 = time.perf_counter()
            hist = pd.concat([hist, new], ignore_index=True).iloc[-(bot.need + 8):]
            bot.process(hist)
            t2 = time.perf_counter()
            lat_ws.append(((t2 - t0) * 1000, (t1 - t0) * 1000))
            nxt += iv
        feed.close()
        store.close()
        if len(fb.kline_requests()) != n_rest or feed.from_socket != args.candles:
            raise SystemExit(f"the websocket bench fell back to REST ({feed.from_rest} candles): figures not comparable")
    lat_ws = np.array(lat_ws[5:])
    print(f"paper decision latency with --websocket (closing kline event sent -> decision committed and logged), "
          f"{len(lat_ws)} candles: median {np.median(lat_ws[:, 0]):.1f} ms, p99 {np.percentile(lat_ws[:, 0], 99):.1f} ms "
          f"(polling above: median {np.median(lat[:, 0]):.1f} ms, p99 {np.percentile(lat[:, 0], 99):.1f} ms)")
    print(f"  of which the stream (event sent by the fake over a websocket to 127.0.0.1 -> candle table in hand): "
          f"median {np.median(lat_ws[:, 1]):.1f} ms, p99 {np.percentile(lat_ws[:, 1], 99):.1f} ms")

    # testnet/live path: decision + order written ahead + sent + acknowledged (spot, long-only variant of
    # the strategy, which is what the broker trades), against the fake spot exchange
    from fake_exchange import FakeExchange

    from mlrisk.live.execution.spot import ExchangeBroker

    bp_spot = model.backtest.model_copy(update={"direction": "long", "leverage": 1.0, "threshold": 0.0})
    lat2, n_orders = [], 0
    with tempfile.TemporaryDirectory() as tmp, FakeExchange(balances={"USDT": "100000", "BTC": "0"}) as fx:
        store = StateStore(Path(tmp) / "t.sqlite", symbol=model.symbol, interval=model.interval, mode="testnet")
        ex = ExchangeClient(BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=fx.api_secret),
                            market="spot", signed=True)
        ex.server_time_ms()
        broker = ExchangeBroker(ex, store, model.symbol, "mlr", bp_spot.order_size, bp_spot.min_notional)
        bot = Bot(pred.predict_latest, spec.seq_len + spec.warmup, spec.seq_len, params_vector(bp_spot, iv), iv,
                  limits, store, CandleLog(Path(tmp) / "t.jsonl", None), broker=broker)
        j0 = len(candles) - args.candles
        for j in range(j0, len(candles)):
            fx.set_price(model.symbol, f"{candles['close'].iloc[j]:.2f}")
            t0 = time.perf_counter()
            res = bot.process(candles.iloc[j - bot.need - 1: j + 1])
            if res is not None and res.orders:
                lat2.append((time.perf_counter() - t0) * 1000)
        n_orders = len(fx.orders)
        store.close()
    lat2 = np.array(lat2[2:])
    print(f"testnet, candle in hand -> decision, orders written ahead, sent and acknowledged (fake spot exchange), {len(lat2)} candles "
          f"with orders, {n_orders} orders: median {np.median(lat2):.1f} ms, p99 {np.percentile(lat2, 99):.1f} ms")

    # the same on USDT-M futures with the pinned strategy itself (both sides, its leverage), against the fake
    # futures exchange: every close also refreshes the bot's open orders and checks positionRisk
    from fake_futures import FakeFuturesExchange

    from mlrisk.live.execution.futures import FuturesBroker

    lat3, lat3_all = [], []
    with tempfile.TemporaryDirectory() as tmp, FakeFuturesExchange(wallet="100000") as fx:
        store = StateStore(Path(tmp) / "f.sqlite", symbol=model.symbol, interval=model.interval, market="futures",
                           mode="testnet")
        ex = ExchangeClient(BinanceSettings(base_url=fx.url, api_key=fx.api_key, api_secret=fx.api_secret),
                            market="futures", signed=True)
        ex.server_time_ms()
        bp = model.backtest
        broker = FuturesBroker(ex, store, model.symbol, "mlr", bp, max_leverage=bp.leverage)
        broker.setup()
        bot = Bot(pred.predict_latest, spec.seq_len + spec.warmup, spec.seq_len, prm, iv, limits, store,
                  CandleLog(Path(tmp) / "f.jsonl", None), broker=broker)
        j0 = len(candles) - args.candles
        for j in range(j0, len(candles)):
            fx.set_price(model.symbol, f"{candles['close'].iloc[j]:.1f}")
            t0 = time.perf_counter()
            res = bot.process(candles.iloc[j - bot.need - 1: j + 1])
            ms = (time.perf_counter() - t0) * 1000
            lat3_all.append(ms)
            if res is not None and res.orders:
                lat3.append(ms)
        n_orders = len(fx.orders)
        store.close()
    lat3, lat3_all = np.array(lat3[2:]), np.array(lat3_all[5:])
    print(f"testnet futures ({bp.direction}, leverage {bp.leverage:g}), candle in hand -> decision, orders written "
          f"ahead, sent and acknowledged (fake futures exchange), {len(lat3)} candles with orders, {n_orders} orders: "
          f"median {np.median(lat3):.1f} ms, p99 {np.percentile(lat3, 99):.1f} ms; every candle (refresh and position "
          f"check included): median {np.median(lat3_all):.1f} ms, p99 {np.percentile(lat3_all, 99):.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "r.sqlite", symbol=model.symbol, interval=model.interval, mode="replay")
        bot = Bot(pred.predict_latest, spec.seq_len + spec.warmup, spec.seq_len, prm, iv, limits, store,
                  CandleLog(None, None), clock=lambda ms: ms)
        n = min(2000, len(candles) - bot.need - 1)
        start = int(candles["open_time"].iloc[-n].value // 10**6)
        res = run_replay(bot, candles, start)
        store.close()
    print(f"replay: {res.candles} candles in {res.seconds:.2f} s = {res.candles / res.seconds:.0f} candles/s "
          f"(final equity {res.equity:.2f})")
    model.close()


if __name__ == "__main__":
    main()
