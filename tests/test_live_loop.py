"""The paper loop against the local fake Binance (python-binance over HTTP on 127.0.0.1), with a
stand-in predictor (no TensorFlow): polling after each close, catch-up and resume after a restart,
one decision per candle, the staleness watchdog, the kill switch, and the replay file readers."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from fake_binance import FakeBinance, make_candles
from mlrisk.backtest import engine as E
from mlrisk.backtest.runner import params_vector
from mlrisk.config.backtest import BacktestParams
from mlrisk.errors import DataError
from mlrisk.exchange import ExchangeClient
from mlrisk.live.feeds.polling import FeedStalled, PollingFeed
from mlrisk.live.feeds.replay import read_candle_file
from mlrisk.live.journal import CandleLog
from mlrisk.live.loop import Bot, Stopper, run_paper, run_replay
from mlrisk.live.risk import RiskLimits
from mlrisk.live.state import StateStore
from mlrisk.settings import BinanceSettings

H = 3_600_000
START = 1_700_000_000_000 // H * H


def _predict(hist: pd.DataFrame) -> float:
    """A stand-in model: up after a rising candle (deterministic, from the window only)."""
    c = hist["close"].to_numpy()
    return 0.7 if c[-1] > c[-2] else 0.3


def _bot(store, log_path=None, need=5):
    prm = params_vector(BacktestParams(threshold=0.1, leverage=2.0, sweep={}), H)
    return Bot(_predict, need, 4, prm, H, RiskLimits(0.0, 1.0, 1.0, 1200), store, CandleLog(log_path, None))


class Clock:
    """The fake exchange's clock, moved by the bot's own sleeps (no real waiting)."""

    def __init__(self, fb: FakeBinance, stop_after: int | None = None, stopper: Stopper | None = None) -> None:
        self.fb, self.slept, self.stop_after, self.stopper = fb, 0.0, stop_after, stopper

    def sleep(self, s: float) -> None:
        self.slept += s
        self.fb.now_ms += int(s * 1000)


def _feed(fb, stop, clock, **kw):
    ex = ExchangeClient(BinanceSettings(base_url=fb.url), market="spot", max_retries=1, backoff_s=0.0, sleep=lambda s: None)
    return PollingFeed(ex, "BTCUSDT", "1h", H, stop=stop, sleep=clock.sleep, **{"poll_delay_s": 1.0, "poll_retry_s": 600.0,
                                                                                 "max_stale_s": 600.0, **kw})


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_paper_loop_polls_after_each_close_and_resumes_after_a_restart(tmp_path):
    rows = make_candles(60, start_ms=START)
    fb = FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=START + 20 * H + 5_000)
    log = tmp_path / "bot.jsonl"
    with fb:
        for run, stop_at in ((1, START + 26 * H), (2, START + 40 * H)):
            stop = Stopper(None)
            clock = Clock(fb)
            feed = _feed(fb, stop, clock)

            def on_candle(res, stop=stop, stop_at=stop_at):
                if res.open_ms + H >= stop_at:
                    stop.request("test")

            with StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h") as store:
                bot = _bot(store, log)
                assert run_paper(bot, feed, stop, on_candle) == "test"
                assert store.last_processed_candle() == stop_at - H
            if run == 1:
                fb.now_ms += 5 * H  # the bot is down for five hours: it catches up on restart
    recs = _records(log)
    opens = [r["open_ms"] for r in recs]
    # first run: from the candle forming at start; then every candle exactly once, in order, no gap
    assert opens == list(range(START + 20 * H, START + 40 * H, H))
    # a decision is made only once a candle is closed by the exchange's clock, and uses the model's P(up)
    closes = {int(r[0]): float(r[4]) for r in rows}
    for r in recs:
        prev, cur = closes[r["open_ms"] - H], closes[r["open_ms"]]
        assert r["p_up"] == (0.7 if cur > prev else 0.3)
    kl = fb.kline_requests()
    assert kl and all("startTime" in q for q in kl)


def test_replay_and_paper_agree_on_the_same_candles(tmp_path):
    rows = make_candles(40, start_ms=START, seed=3)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=START + 10 * H + 1) as fb:
        stop = Stopper(None)
        feed = _feed(fb, stop, Clock(fb))
        with StateStore(tmp_path / "p.sqlite", symbol="BTCUSDT", interval="1h") as store:
            run_paper(_bot(store, tmp_path / "p.jsonl"), feed, stop,
                      lambda r: stop.request("end") if r.open_ms >= START + 38 * H else None)
    cdf = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                                      "trades", "taker_buy_base", "taker_buy_quote", "ignore"])
    csv = tmp_path / "k.csv"
    cdf.to_csv(csv, index=False, header=False)
    candles = read_candle_file(csv, H)
    with StateStore(tmp_path / "r.sqlite", symbol="BTCUSDT", interval="1h", mode="replay") as store:
        run_replay(_bot(store, tmp_path / "r.jsonl"), candles.iloc[:39], START + 10 * H)
    paper, replay = _records(tmp_path / "p.jsonl"), _records(tmp_path / "r.jsonl")
    strip = lambda r: {k: v for k, v in r.items() if k != "latency_ms"}  # noqa: E731
    assert [strip(r) for r in paper[:-1]] == [strip(r) for r in replay[:-1]]  # the last one: replay's end of data
    assert len(paper) == 29 and any(r["trades"] for r in paper)


def test_a_stalled_feed_warns_retries_then_stops_safely(tmp_path):
    rows = make_candles(30, start_ms=START)
    fb = FakeBinance({("BTCUSDT", "1h"): rows[:25]}, now_ms=START + 20 * H + 5_000)  # candles stop at 24
    warnings: list[str] = []
    with fb:
        stop = Stopper(None)
        clock = Clock(fb)
        feed = _feed(fb, stop, clock, warn=warnings.append, max_stale_s=3000.0, poll_retry_s=300.0)
        with StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h") as store:
            with pytest.raises(FeedStalled, match="MLRISK_MAX_STALE_S"):
                run_paper(_bot(store), feed, stop)
            assert store.last_processed_candle() == START + 24 * H  # everything served was processed and saved
    assert warnings and all("late" in w for w in warnings)
    # a feed that recovers before the limit does not stop
    fb2 = FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=START + 20 * H + 5_000)
    with fb2:
        fb2.faults = [{"path": "/klines", "kind": "500"}] * 4
        stop = Stopper(None)
        feed = _feed(fb2, stop, Clock(fb2), max_stale_s=3000.0, poll_retry_s=300.0)
        with StateStore(tmp_path / "t.sqlite", symbol="BTCUSDT", interval="1h") as store:
            run_paper(_bot(store), feed, stop, lambda r: stop.request("ok") if r.open_ms >= START + 22 * H else None)
            assert store.last_processed_candle() == START + 22 * H


def test_kill_switch_file_stops_between_candles(tmp_path):
    rows = make_candles(60, start_ms=START)
    kill = tmp_path / "STOP"
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=START + 20 * H + 5_000) as fb:
        stop = Stopper(kill)
        feed = _feed(fb, stop, Clock(fb))
        with StateStore(tmp_path / "s.sqlite", symbol="BTCUSDT", interval="1h") as store:
            reason = run_paper(_bot(store), feed, stop, lambda r: kill.touch() if r.open_ms == START + 23 * H else None)
            assert "kill switch" in reason and store.last_processed_candle() == START + 23 * H


def test_replay_file_errors_are_one_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_candle_file(tmp_path / "nope.parquet", H)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        read_candle_file(bad, H)


def test_gaps_in_a_replay_file_are_filled_like_the_pipeline(tmp_path):
    rows = make_candles(30, start_ms=START)
    del rows[10]
    csv = tmp_path / "g.csv"
    pd.DataFrame(rows).to_csv(csv, index=False, header=False)
    c = read_candle_file(csv, H)
    assert len(c) == 30 and c["volume"].iloc[10] == 0 and c["close"].iloc[10] == c["close"].iloc[9]
    with StateStore(tmp_path / "r.sqlite", symbol="BTCUSDT", interval="1h", mode="replay") as store:
        bot = _bot(store)
        res = run_replay(bot, c)
    assert res.candles == 30
    # the same result as the backtest engine on the filled candles with the same P(up) (NaN before a full window)
    ohlc = [c[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")]
    p = np.array([math.nan if i < 4 else _predict(c.iloc[: i + 1]) for i in range(len(c))])
    assert p[10] == 0.3                                  # the filled candle: flat, so "not rising"
    equity, trades = E.run(*ohlc, p, bot.prm)
    assert len(trades) > 0
    np.testing.assert_array_equal(res.trades, trades)
    assert res.equity == equity[-1]


@pytest.mark.parametrize("argv, words", [
    (["--mode", "testnet"], "needs MLRISK_BINANCE_API_KEY"),
    (["--mode", "live"], "needs MLRISK_BINANCE_API_KEY"),
    (["--max-drawdown", "2"], "max_drawdown (MLRISK_MAX_DRAWDOWN)"),
    (["--market", "spot", "--max-leverage", "3"], "max_leverage must be 1 on spot"),
    (["--start", "2024-01-01"], "belong to --replay"),
    (["--replay", "nope.parquet"], "no such file"),
    (["--replay", "x.csv", "--start", "yesterday-ish"], "is not a date/time"),
    (["--replay", "x.csv", "--state-file", "s.sqlite"], "--replay keeps no state"),   # refused, not ignored
    (["--replay", "x.csv", "--reset-halt", "--websocket"], "drop --reset-halt, --websocket"),
])
def test_cli_errors_are_one_line_before_any_network_call(monkeypatch, tmp_path, capsys, argv, words):
    import socket

    from mlrisk.live import cli

    def no_network(*a, **k):
        raise AssertionError("network call")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("")
    for var in ("MLRISK_BINANCE_API_KEY", "MLRISK_BINANCE_API_SECRET", "MLRISK_MODE", "MLRISK_MARKET"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(argv + ["--env-file", str(tmp_path / "none.env")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: live: ") and words in err[0], err


def test_testnet_with_keys_passes_the_settings_and_never_echoes_them(monkeypatch, tmp_path, capsys):
    from mlrisk.live import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", "k" * 20)
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", "s" * 20)
    assert cli.main(["--mode", "testnet", "--env-file", str(tmp_path / "none.env")]) == 2
    err = capsys.readouterr().err
    assert "dvc.lock not found" in err and "k" * 20 not in err and "s" * 20 not in err
    assert cli.main(["--mode", "testnet", "--replay", "x.parquet", "--env-file", str(tmp_path / "none.env")]) == 2
    assert "--replay is offline" in capsys.readouterr().err
    assert cli.main(["--mode", "testnet", "--no-risk-limits", "--env-file", str(tmp_path / "none.env")]) == 2
    assert "--no-risk-limits is for paper mode and --replay only" in capsys.readouterr().err


def test_cli_without_a_pinned_model_says_run_dvc_repro(monkeypatch, tmp_path, capsys):
    from mlrisk.live import cli

    (tmp_path / "k.csv").write_text("")
    assert cli.main(["--repo", str(tmp_path), "--replay", str(tmp_path / "k.csv"), "--env-file", str(tmp_path / "n")]) == 2
    assert "dvc.lock not found: run `dvc repro`" in capsys.readouterr().err


def test_help_documents_every_setting(capsys):
    from mlrisk.live import cli
    from mlrisk.live.settings import ENV_ONLY, LiveSettings

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in LiveSettings.model_fields:
        if name not in ENV_ONLY:
            assert "--" + name.replace("_", "-") in out and f"MLRISK_{name.upper()}" in out
    assert "--alert-urls" not in out and "MLRISK_ALERT_URLS" in out  # a secret: never a flag
    for flag in ("--replay", "--start", "--rev", "--trades-out", "--reset-halt", "--no-risk-limits"):
        assert flag in out


class _StandIn:
    """The model's predictor, replaced by the stand-in (no TensorFlow): what ``cli._bot`` uses."""

    def __init__(self, *a) -> None:
        self.spec = type("Spec", (), {"seq_len": 4, "warmup": 1, "features": ["close_pct"], "candles": "traded", "metrics_lag": 5})()

    @staticmethod
    def predict_latest(hist: pd.DataFrame) -> float:
        return _predict(hist)


def _cli_replay(monkeypatch, tmp_path, capsys, *flags: str, **settings) -> tuple[str, dict]:
    """``mlrisk live --replay`` from the pinning on (the model's predictor stood in): its stdout and trades."""
    from types import SimpleNamespace

    from mlrisk.config.backtest import BacktestParams
    from mlrisk.live import app, cli
    from mlrisk.live.settings import load_live_settings

    monkeypatch.setattr("mlrisk.model.inference.Predictor", _StandIn)
    csv = tmp_path / "k.csv"
    pd.DataFrame(make_candles(80, start_ms=START, seed=3)).to_csv(csv, index=False, header=False)
    args = cli.build_parser().parse_args(["--replay", str(csv), "--trades-out", str(tmp_path / "t.csv"), *flags])
    model = SimpleNamespace(backtest=BacktestParams(threshold=0.1, leverage=2.0, sweep={}), model_path=None, spec_path=None,
                            params=SimpleNamespace(data=SimpleNamespace(market="spot")))  # the model's candles
    s = load_live_settings(env_file=None, **settings).for_strategy(model.backtest)
    assert app.replay(args, s, model, "BTCUSDT", "1h", H, None) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return out[-1], pd.read_csv(tmp_path / "t.csv")


def test_a_replay_stopped_by_a_risk_limit_says_when_which_and_how_to_compare(monkeypatch, tmp_path, capsys):
    line, trades = _cli_replay(monkeypatch, tmp_path, capsys, max_drawdown=0.002)
    m = re.search(r"risk limits bound: trading halted at (\d{4}-\d\d-\d\d \d\d:00) UTC \(drawdown: equity [\d.]+ is "
                  r"[\d.]+% below the peak [\d.]+ \(max_drawdown 0.20%\)\); orders removed on (\d+) candles? by "
                  r"max_drawdown; the backtest has no risk limits: replay with --no-risk-limits for a like-for-like "
                  r"comparison$", line)
    assert line.startswith("replay: BTCUSDT 1h, 80 candles") and m, line
    halted_at = pd.Timestamp(m.group(1), tz="UTC")
    # no entry after the halt (a drawdown halt is never lifted in a replay)
    assert len(trades) and (pd.to_datetime(trades["entry_time"]) <= halted_at + pd.Timedelta(hours=1)).all()
    # without the limits: the same as the backtest engine on the same candles and P(up), and said so
    free, free_trades = _cli_replay(monkeypatch, tmp_path, capsys, "--no-risk-limits", max_drawdown=0.002)
    assert free.endswith("risk limits off (--no-risk-limits), like the backtest") and "bound" not in free
    assert len(free_trades) > len(trades)
    c = read_candle_file(tmp_path / "k.csv", H)
    ohlc = [c[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close")]
    p = np.array([math.nan if i < 4 else _predict(c.iloc[: i + 1]) for i in range(len(c))])
    prm = params_vector(BacktestParams(threshold=0.1, leverage=2.0, sweep={}), H)
    equity, engine_trades = E.run(*ohlc, p, prm)
    assert len(free_trades) == len(engine_trades) and f"final equity {equity[-1]:.2f}" in free


def test_a_replay_where_no_limit_binds_says_nothing_of_limits(monkeypatch, tmp_path, capsys):
    line, trades = _cli_replay(monkeypatch, tmp_path, capsys, max_drawdown=1.0, max_daily_loss=1.0)
    assert len(trades) and "risk limits" not in line and line.startswith("replay: BTCUSDT 1h, 80 candles")
