"""Live parity of the derivatives features: the bot's window, its inputs read from the exchange (the
fake serves klines, spot klines, mark klines, funding and openInterestHist as Binance documents them)
or from data/raw for a replay, gives the pipeline's feature rows for the same candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fake_binance import FakeBinance, make_candles, make_funding, make_mark
from mlrisk.data.derivatives import funding_from_raw, to_mark
from mlrisk.data.klines import klines_from_rows
from mlrisk.data.point_in_time import with_inputs
from mlrisk.errors import DataError
from mlrisk.exchange import ExchangeClient
from mlrisk.features import DERIVATIVES, compute_features, warmup
from mlrisk.live.feeds.inputs import ExchangeReads, InputMissing, RawReads, WindowInputs
from mlrisk.live.venue import FuturesVenue
from mlrisk.settings import BinanceSettings

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z
N = 240
NAMES = ["close_pct", "funding_rate", "funding_change", "basis_spot", "basis_mark", "log_open_interest_change"]
NEED = 60  # the bot's window: seq_len + warmup candles


def _market(seed: int = 3):
    rng = np.random.default_rng(seed)
    perp = make_candles(N, start_ms=T0, seed=seed)
    spot = [[r[0], *(f"{float(x) * (1 + d):.2f}" for x in r[1:5]), *r[5:]]
            for r, d in zip(perp, rng.normal(4e-4, 2e-4, N))]
    funding = make_funding(N // 8 + 12, start_ms=T0 - 4 * 24 * H, jitter_ms=23, seed=seed)
    oi_t = range(T0 - 24 * H, T0 + N * H, 300_000)
    oi = [{"symbol": "BTCUSDT", "sumOpenInterest": f"{v / 42_000:.8f}", "sumOpenInterestValue": f"{v:.8f}", "timestamp": t}
          for t, v in zip(oi_t, rng.uniform(2e9, 3e9, len(oi_t)))]
    return perp, spot, make_mark(perp), funding, oi


def _pipeline(perp, spot, mark, funding, oi, candles: str) -> pd.DataFrame:
    """What the preprocess stage computes: whole tables joined by with_inputs (model_candles' call)."""
    from mlrisk.data.klines import validate

    # the fetch stage keeps the spot gaps (mlrisk.data.sources validates the spot companion with gap_policy keep;
    # asserted on the sample in test_features_derivatives.py)
    p, s = klines_from_rows(perp), validate(klines_from_rows(spot), H, "keep")[0]
    tables = {
        "perp": p, "spot": s, "mark": to_mark(klines_from_rows(mark)),
        "funding": funding_from_raw([r["fundingTime"] for r in funding], [r["fundingRate"] for r in funding]),
        "metrics": pd.DataFrame({"create_time": pd.to_datetime([r["timestamp"] for r in oi], unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                                 "sum_open_interest_value": [float(r["sumOpenInterestValue"]) for r in oi]}),
    }
    base, kind = (s, "spot") if candles == "spot" else (p, "perp")
    j = with_inputs(base, NAMES, H, kind=kind, market="futures", load={k: (lambda v=v: v) for k, v in tables.items()})
    return compute_features(j, NAMES).set_index(pd.DatetimeIndex(base["open_time"]))  # by open time: spot may have gaps


@pytest.mark.parametrize("candles,spot_gap", [("traded", False), ("spot", False), ("traded", True), ("spot", True)])
def test_live_window_features_equal_the_pipelines(candles, spot_gap):
    perp, spot, mark, funding, oi = _market()
    if spot_gap:  # the spot market missed two candles (a halt): the pipeline drops the windows holding them, the bot
        spot = spot[:150] + spot[152:]  # makes no decision on them (InputMissing), decides the others alike
    assert set(DERIVATIVES) <= set(NAMES)
    pipe = _pipeline(perp, spot, mark, funding, oi, candles)
    with FakeBinance(candles={("BTCUSDT", "1h"): spot}, futures={("BTCUSDT", "1h"): perp}, now_ms=T0 + N * H + 5_000,
                     funding={"BTCUSDT": funding}, mark={("BTCUSDT", "1h"): mark}, open_interest={"BTCUSDT": oi}) as fb:
        es = BinanceSettings(base_url=fb.url)
        reads = ExchangeReads("BTCUSDT", FuturesVenue(ExchangeClient(es, market="futures", sleep=[].append), "BTCUSDT"),
                              ExchangeClient(es, market="spot", sleep=[].append))
        w = WindowInputs(NAMES, candles, "futures", "1h", H, 300_000, reads)
        hist = klines_from_rows(perp)
        w_ = warmup(NAMES)
        for end in (100, 181, 211, N):  # windows ending at four candles, the last one the newest
            window = hist.iloc[end - NEED:end].reset_index(drop=True)
            if spot_gap and end - NEED <= 151 and end > 150:  # the window holds the halt
                with pytest.raises(InputMissing) as e:
                    w(window)
                assert e.value.note["inputs"] == (["spot_candle"] if candles == "spot" else ["spot_close"])
                assert e.value.note["candles"] == [T0 + i * H for i in (150, 151) if end - NEED <= i]  # the halt's rows in it
                assert e.value.note["open_ms"] == T0 + (end - 1) * H
                continue
            live = compute_features(w(window), NAMES)
            want = pipe.loc[window["open_time"].iloc[w_:]].to_numpy()
            assert np.isfinite(live.iloc[w_:].to_numpy()).all()
            np.testing.assert_array_equal(live.iloc[w_:].to_numpy(), want)
        assert any(r.path == "/futures/data/openInterestHist" for r in fb.requests)
        oi_q = fb.requests_to("/futures/data/openInterestHist")
        assert all(q["period"] == "5m" and int(q["limit"]) <= 500 for q in oi_q) and len(oi_q) >= 2  # paged


def test_replay_reads_the_pipelines_tables(tmp_path):
    from mlrisk.data.derivatives import funding_path, mark_path, metrics_path, spot_path
    from mlrisk.io import write_parquet

    perp, spot, mark, funding, oi = _market(5)
    pipe = _pipeline(perp, spot, mark, funding, oi, "traded")
    write_parquet(tmp_path / "BTCUSDT-1h.parquet", klines_from_rows(perp))
    write_parquet(spot_path(tmp_path, "BTCUSDT", "1h"), klines_from_rows(spot))
    write_parquet(mark_path(tmp_path, "BTCUSDT", "1h"), to_mark(klines_from_rows(mark)))
    write_parquet(funding_path(tmp_path, "BTCUSDT"),
                  funding_from_raw([r["fundingTime"] for r in funding], [r["fundingRate"] for r in funding]))
    m = pd.DataFrame({"create_time": pd.to_datetime([r["timestamp"] for r in oi], unit="ms", utc=True).astype("datetime64[ms, UTC]"),
                      "sum_open_interest": 1.0, "sum_open_interest_value": [float(r["sumOpenInterestValue"]) for r in oi]})
    for c in ("count_toptrader_long_short_ratio", "sum_toptrader_long_short_ratio", "count_long_short_ratio",
              "sum_taker_long_short_vol_ratio"):
        m[c] = np.nan
    write_parquet(metrics_path(tmp_path, "BTCUSDT"), m)
    w = WindowInputs(NAMES, "traded", "futures", "1h", H, 300_000, RawReads(tmp_path, "BTCUSDT", "1h"))
    window = klines_from_rows(perp).iloc[N - NEED:].reset_index(drop=True)
    live = compute_features(w(window), NAMES)
    np.testing.assert_array_equal(live.iloc[1:].to_numpy(), pipe.iloc[N - NEED + 1:].to_numpy())


def test_a_spot_bot_refuses_a_model_on_the_perpetuals_data():
    hist = klines_from_rows(make_candles(30, start_ms=T0))
    with pytest.raises(DataError, match="set data.market: futures"):
        WindowInputs(["funding_rate"], "traded", "spot", "1h", H, 300_000, ExchangeReads("BTCUSDT"))(hist)
    with pytest.raises(DataError, match="trade it on futures"):
        WindowInputs(["close_pct"], "spot", "spot", "1h", H, 300_000, ExchangeReads("BTCUSDT"))(hist)
    plain = WindowInputs(["close_pct"], "traded", "spot", "1h", H, 300_000, None)
    assert not plain.needed and plain(hist) is hist


def test_the_app_builds_the_window_inputs_the_pinned_spec_asks_for(tmp_path):
    from mlrisk.data.preprocess import PreprocessSpec
    from mlrisk.errors import SettingsError
    from mlrisk.live.app import window_inputs
    from mlrisk.live.settings import LiveSettings

    def model(features, candles="traded"):
        spec = PreprocessSpec(features=features, seq_len=8, warmup=1, mean=[0.0] * len(features), scale=[1.0] * len(features),
                              label={}, n_classes=2, interval="1h", candles=candles, metrics_lag=7)
        return spec

    fut = LiveSettings(_env_file=None, mode="paper", market="futures", binance=BinanceSettings(base_url="http://127.0.0.1:9"))
    assert window_inputs(model(["close_pct"]), fut, "futures", "BTCUSDT", "1h", H) is None
    w = window_inputs(model(["close_pct", "basis_mark"]), fut, "futures", "BTCUSDT", "1h", H)
    assert isinstance(w.reads, ExchangeReads) and w.metrics_lag_ms == 7 * 60_000 and w.candles == "traded"
    assert w.reads.spot.client.API_URL.startswith("http://127.0.0.1:9") and w.reads.futures.exchange.market == "futures"
    w = window_inputs(model(["close_pct"], "spot"), fut, "futures", "BTCUSDT", "1h", H, raw_dir=tmp_path)
    assert isinstance(w.reads, RawReads) and w.needed
    spot = fut.model_copy(update={"market": "spot"})
    with pytest.raises(SettingsError, match="trade it on futures"):
        window_inputs(model(["funding_rate"]), spot, "spot", "BTCUSDT", "1h", H)


def test_a_window_missing_a_derivatives_input_is_no_decision_and_the_candle_says_which(tmp_path):
    """A spot halt (two spot candles absent) and a mark candle not served yet at the newest close: the bot
    makes no decision on the windows that lack them (P(up) none) and the candle's journal line names the
    input and the candles (``market_notes``: ``input_missing``); every other candle decides."""
    import json

    from mlrisk.backtest.futures import market_params
    from mlrisk.backtest.runner import params_vector
    from mlrisk.config.backtest import BacktestParams
    from mlrisk.live.journal import CandleLog
    from mlrisk.live.loop import Bot, run_replay
    from mlrisk.live.risk import RiskLimits
    from mlrisk.live.state import StateStore

    perp, spot, mark, funding, oi = _market(7)
    hist = klines_from_rows(perp).iloc[:120].reset_index(drop=True)
    tables = {"spot": klines_from_rows(spot[:80] + spot[82:]), "mark": to_mark(klines_from_rows(mark[:119])),
              "funding": funding_from_raw([r["fundingTime"] for r in funding], [r["fundingRate"] for r in funding])}

    class Reads:  # the tables as served: the halt, and the newest mark candle not yet
        def _cut(self, df, col, a, b):
            t = pd.DatetimeIndex(df[col]).as_unit("ms").asi8
            return df[(t >= a) & (t < b)].reset_index(drop=True)

        def funding_history(self, a, b):
            return self._cut(tables["funding"], "funding_time_raw", a, b)

        def mark_klines(self, interval, a, b):
            return self._cut(tables["mark"], "open_time", a, b)

        def spot_klines(self, interval, a, b):
            return self._cut(tables["spot"], "open_time", a, b)

    names = ["close_pct", "basis_spot", "basis_mark", "funding_rate"]
    w = WindowInputs(names, "traded", "futures", "1h", H, 300_000, Reads())
    need = 8
    bp, brackets = market_params("BTCUSDT", "futures", BacktestParams(leverage=2.0))
    log = tmp_path / "bot.jsonl"
    with StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h", mode="replay") as store:
        bot = Bot(lambda h: 0.6 if np.isfinite(compute_features(w(h), names).to_numpy()[1:]).all() else np.nan, need, need,
                  params_vector(bp, H), H, RiskLimits.none(), store, CandleLog(log, None), brackets=brackets)
        run_replay(bot, hist)
    recs = [json.loads(x) for x in log.read_text().splitlines() if "event" not in json.loads(x)]
    halted = {i for i in range(len(recs)) if i >= need - 1 and i - need + 1 <= 81 and i >= 80}
    for i, r in enumerate(recs):
        notes = [n for n in r.get("market_notes", []) if n["kind"] == "input_missing"]
        if i in halted:
            assert r["p_up"] is None and notes == [{"kind": "input_missing", "open_ms": T0 + i * H, "inputs": ["spot_close"],
                                                    "candles": [T0 + k * H for k in (80, 81) if i - need < k <= i]}]
        elif i == 119:
            assert r["p_up"] is None and notes == [{"kind": "input_missing", "open_ms": T0 + i * H, "inputs": ["mark_close"],
                                                    "candles": [T0 + 119 * H]}]
        elif i >= need - 1:
            assert r["p_up"] == 0.6 and not notes


def test_a_replay_prices_and_reads_the_inputs_on_the_models_market(tmp_path, monkeypatch):
    """--replay trades the model's data.market (futures here), whatever MLRISK_MARKET says (spot): the window
    inputs are read for that market, so a long-only leverage-1 model with derivatives features replays."""
    from types import SimpleNamespace

    import mlrisk.model.inference as inference
    from mlrisk.config.backtest import BacktestParams
    from mlrisk.data.preprocess import PreprocessSpec
    from mlrisk.live.app import _bot
    from mlrisk.live.settings import LiveSettings

    spec = PreprocessSpec(features=["close_pct", "basis_mark"], seq_len=8, warmup=1, mean=[0.0] * 2, scale=[1.0] * 2,
                          label={}, n_classes=2, interval="1h", metrics_lag=7)
    monkeypatch.setattr(inference, "Predictor", lambda *a: SimpleNamespace(spec=spec, predict_latest=lambda x: 0.5))
    settings = LiveSettings(_env_file=None, mode="paper", market="spot", binance=BinanceSettings(base_url="http://127.0.0.1:9"))
    model = SimpleNamespace(model_path="m", spec_path="s", backtest=BacktestParams(leverage=1.0))
    store = SimpleNamespace(step_state=lambda: None)
    bot = _bot(SimpleNamespace(no_risk_limits=True), settings, model, store, None, H, symbol="BTCUSDT", market="futures",
               interval="1h", raw_dir=tmp_path)
    assert bot.need == 9
    with pytest.raises(DataError, match="mark.parquet not found"):  # the window reads the replay's futures tables
        bot.predict(klines_from_rows(make_candles(9, start_ms=T0)))

    class Venue:  # the paper bot's venue (paper() builds one, shared with its funding and mark reader)
        def mark_klines(self, *a):
            raise LookupError("read through the venue given")

    bot = _bot(SimpleNamespace(no_risk_limits=True), settings, model, store, None, H, symbol="BTCUSDT", market="futures",
               interval="1h", futures=Venue())
    with pytest.raises(LookupError, match="read through the venue given"):
        bot.predict(klines_from_rows(make_candles(9, start_ms=T0)))


def test_futures_paper_mode_reads_the_exchange_through_one_venue(tmp_path, monkeypatch):
    """The paper bot's window inputs (ExchangeReads) and its per-candle funding and mark (VenueInputs) read
    the same endpoints each close: one FuturesVenue, built in paper(), serves both."""
    from types import SimpleNamespace

    import mlrisk.live.app as app
    from mlrisk.live.feeds.market import VenueInputs
    from mlrisk.live.settings import LiveSettings

    class Built(Exception):
        pass

    got = {}

    def bot(*a, **kw):
        got.update(kw)
        raise Built

    monkeypatch.setattr(app, "_bot", bot)
    settings = LiveSettings(_env_file=None, mode="paper", market="futures", state_file=tmp_path / "s.sqlite",
                            kill_switch_file=tmp_path / "STOP", log_file=tmp_path / "bot.jsonl",
                            binance=BinanceSettings(base_url="http://127.0.0.1:9"))
    with pytest.raises(Built):
        app.paper(SimpleNamespace(reset_halt=False), settings, SimpleNamespace(), "BTCUSDT", "1h", H)
    assert isinstance(got["perp"], VenueInputs) and isinstance(got["futures"], FuturesVenue)
    assert got["perp"].venue is got["futures"]
