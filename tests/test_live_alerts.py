"""The bot's alerts (mlrisk.live.alerts through apprise, fed by the journal's observer), sent to a local
HTTP endpoint that records what it receives (never an outside address): exactly start, a fill, a
halt and stop for a scripted paper run; a storm of exchange errors (the exchange client's own retries
against the fake exchange) is one message plus one summary with the count; the rate limit's rule;
a slow or failing target never holds up the loop; the URLs' tokens are never logged or stored."""

from __future__ import annotations

import logging
import time

import pytest
from fake_binance import FakeBinance, make_candles
from observe_support import LAST, H, Recorder, journal_lines, scripted_run, settings
from pydantic import SecretStr

from mlrisk.errors import SettingsError
from mlrisk.exchange import ExchangeClient
from mlrisk.live import alerts as A
from mlrisk.live.journal import CandleLog
from mlrisk.live.observe import watch
from mlrisk.settings import BinanceSettings

TOKEN = "T0kenSecret9f8e7d6c5b4a"


def test_a_scripted_run_sends_exactly_start_a_fill_a_halt_and_stop(tmp_path):
    with Recorder() as rec:
        scripted_run(tmp_path, settings(alert_urls=[rec.url(TOKEN)], alert_cooldown_s=300.0))
    assert [r["path"] for r in rec.requests] == [f"/hooks/{TOKEN}"] * 4
    got = [(r["body"]["title"], r["body"]["type"], r["body"]["message"]) for r in rec.requests]
    fill_open = time.strftime("%Y-%m-%dT%H:%M", time.gmtime((LAST - 4 * H) / 1000))   # entry placed at the first close
    assert got == [
        ("mlrisk", "info", "BTCUSDT paper: started: paper futures BTCUSDT 1h, model 01234567, polling feed"),
        ("mlrisk", "info", f"BTCUSDT paper: long entry filled: 500 at the open of {fill_open}Z; position 500 @ 100.00 "
                           "(simulated)"),
        ("mlrisk", "warning", "BTCUSDT paper: HALTED (drawdown: equity 9000.00 is 10.00% below the peak 10000.00 "
                              "(max_drawdown 8.00%))"),
        ("mlrisk", "info", "BTCUSDT paper: stopped: kill switch file live/STOP exists; equity 9000.00"),
    ]
    events = [r["event"] for r in journal_lines(tmp_path / "bot.jsonl") if "event" in r]
    assert events == ["alerts", "start", "stop"]


def _errors(fb: FakeBinance, n: int) -> None:
    """``n`` failed requests, each retried by the exchange client (its own warnings), then a success."""
    fb.faults = [{"path": "/klines", "kind": "500"}] * n
    ex = ExchangeClient(BinanceSettings(base_url=fb.url), market="spot", max_retries=n, backoff_s=0.0, sleep=lambda s: None)
    ex.call("get_klines", symbol="BTCUSDT", interval="1h", limit=2)


def test_a_storm_of_exchange_errors_is_one_message_and_a_summary(tmp_path):
    n = 25
    with Recorder() as rec, FakeBinance({("BTCUSDT", "1h"): make_candles(5)}) as fb:
        log = CandleLog(tmp_path / "bot.jsonl", None)
        w = watch(settings(alert_urls=[rec.url(TOKEN)], alert_cooldown_s=300.0, alert_errors=3), log)
        _errors(fb, 2)                       # two errors: below MLRISK_ALERT_ERRORS, no message
        time.sleep(0.3)
        assert rec.requests == []
        _errors(fb, n - 2)                   # the storm
        log.event("stop", reason="test", last_candle=None, equity=None)
        w.close()
        log.close()
    msgs = rec.messages()
    assert len(msgs) == 3 and msgs[2] == "stopped: test"       # the pending summary goes before the stop
    assert msgs[0] == "3 exchange errors within 300 s; the last: Binance get_klines failed (HTTP 500): retrying in 0.0 s " \
                      "(attempt 2 of 24)"
    assert msgs[1] == (f"{n - 3} more exchange error messages suppressed (within 300 s); the last: {n} exchange errors "
                       "within 300 s; the last: Binance get_klines failed (HTTP 500): retrying in 0.0 s (attempt 24 of 24)")


def test_the_rate_limit_holds_counts_and_summarises_per_kind():
    now = [0.0]
    r = A.RateLimit(60.0, clock=lambda: now[0])
    assert r.offer("fill", "f1") and r.offer("halt", "h1")       # kinds are independent
    assert not r.offer("fill", "f2") and not r.offer("fill", "f3")
    assert r.due() == [] and r.next_due() == 60.0
    now[0] = 60.0
    assert r.due() == [("fill", "2 more fill messages suppressed (within 60 s); the last: f3")]
    assert not r.offer("fill", "f4")                             # the summary started a new cooldown
    now[0] = 121.0
    assert r.due() == [("fill", "1 more fill message suppressed (within 60 s); the last: f4")]
    now[0] = 182.0
    assert r.due() == [] and r.offer("fill", "f5")               # quiet: the next one goes at once
    assert all(A.RateLimit(0.0).offer("fill", str(i)) for i in range(5))   # 0: no limit


def test_a_slow_target_never_holds_up_the_loop_and_a_full_queue_drops(monkeypatch, caplog):
    monkeypatch.setattr(A, "QUEUE_SIZE", 5)
    monkeypatch.setattr(A, "CLOSE_S", 1.0)
    with Recorder(delay_s=2.0) as rec:
        a = A.Alerter([SecretStr(rec.url(TOKEN))], cooldown_s=0.0)
        t = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            for i in range(50):
                a.fact(A.Fact("fill", f"fill {i}"))
        assert time.perf_counter() - t < 0.5                     # 50 facts while one send takes 2 s
        assert a.dropped >= 40 and len([r for r in caplog.records if "queue is full" in r.message]) == 1
        a.close()                                               # waits CLOSE_S at most
        assert time.perf_counter() - t < 5
        a._thread.join(5)                                       # the rest is dropped: the thread ends after
        assert not a._thread.is_alive() and a.sent < 5          # the send in progress


def test_a_failing_target_is_logged_once_without_its_url_and_nothing_stores_a_token(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)                              # everything any logger says
    with Recorder(status=500) as rec:
        scripted_run(tmp_path, settings(alert_urls=[rec.url(TOKEN), f"json://127.0.0.1:9/x/{TOKEN}"],
                                        alert_cooldown_s=300.0))
    assert len(rec.requests) == 4                                # every message tried, every one refused
    failed = [r for r in caplog.records if r.name == "mlrisk.live.alerts"]
    assert len(failed) == 1 and "not delivered" in failed[0].getMessage()
    out = capsys.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [out.out, out.err]
    blobs = [(tmp_path / "bot.jsonl").read_bytes(), (tmp_path / "state.sqlite").read_bytes()]
    assert not any(TOKEN in t for t in texts) and not any(TOKEN.encode() in b for b in blobs)
    assert not any("127.0.0.1:9/" in t or f":{rec.port}/" in t for t in texts)


def test_alert_urls_are_secret_from_the_environment_only(monkeypatch, capsys, tmp_path):
    from mlrisk.live import cli
    from mlrisk.live.settings import load_live_settings

    env = tmp_path / ".env"
    env.write_text(f"MLRISK_ALERT_URLS=json://127.0.0.1:9/a/{TOKEN} discord://1234/{TOKEN}\n")
    assert len(load_live_settings(env_file=env).alert_urls) == 2          # .env: the same form

    monkeypatch.setenv("MLRISK_ALERT_URLS", f"json://127.0.0.1:9/a/{TOKEN}  tgram://123456789:{TOKEN}/42")
    s = settings()
    assert [u.get_secret_value().split("://")[0] for u in s.alert_urls] == ["json", "tgram"]
    assert TOKEN not in repr(s) and TOKEN not in str(s) and TOKEN not in s.model_dump_json()
    monkeypatch.setenv("MLRISK_ALERT_URLS", f"{TOKEN}")
    with pytest.raises(SettingsError) as e:
        settings()
    assert "MLRISK_ALERT_URLS" in str(e.value) and TOKEN not in str(e.value)
    monkeypatch.setenv("MLRISK_ALERT_URLS", f"nosuchscheme://{TOKEN}")
    with pytest.raises(SettingsError) as e:
        watch(settings(), CandleLog(None, None))
    assert str(e.value).startswith("MLRISK_ALERT_URLS: URL 1 (nosuchscheme://...) is not one apprise") and TOKEN not in str(e.value)
    with pytest.raises(SystemExit):                                # no flag: a token on the command line shows in ps
        cli.build_parser().parse_args(["--alert-urls", "json://x/y"])
    assert "unrecognized arguments: --alert-urls" in capsys.readouterr().err


def test_an_error_that_ends_the_bot_is_the_last_message(tmp_path):
    with Recorder() as rec:
        log = CandleLog(None, None)
        w = watch(settings(alert_urls=[rec.url(TOKEN)]), log)
        log.event("start", mode="live", symbol="ETHUSDT", interval="1h", model_md5="ab" * 16, market="spot",
                  feed="websocket")
        try:
            try:
                raise SettingsError("position mismatch: the state file records 1 but the exchange's position is 0")
            finally:
                w.close()                                        # as the app's finally does
        except SettingsError:
            pass
    assert rec.messages()[-1] == ("ETHUSDT live: stopped with an error: SettingsError: position mismatch: the state "
                                  "file records 1 but the exchange's position is 0")


def test_the_app_starts_both_from_the_settings_and_closes_them(tmp_path, monkeypatch):
    """``mlrisk live`` paper mode as wired by the app (the model's predictor stood in, the fake exchange
    as Binance, its clock an hour further every 50 ms): the metrics endpoint named in the journal
    answers while the bot runs and is closed after it stops; the alerts start with its start and end
    with its stop (the kill switch)."""
    import argparse
    import threading
    import urllib.request
    from types import SimpleNamespace

    from observe_support import FIRST, MD5, START
    from test_live_loop import _StandIn

    from mlrisk.config.backtest import BacktestParams
    from mlrisk.live import app

    monkeypatch.setattr("mlrisk.model.inference.Predictor", _StandIn)
    # a spot strategy (long only, leverage 1): the fake serves spot candles only (paper mode on futures
    # would also read the perpetual's funding and mark candles)
    model = SimpleNamespace(backtest=BacktestParams(threshold=0.1, leverage=1.0, direction="long", sweep={}),
                            model_path=None, spec_path=None, md5={"models/model.keras": MD5}, rev=None,
                            params=SimpleNamespace(data=SimpleNamespace(market="spot")))
    kill, journal = tmp_path / "STOP", tmp_path / "bot.jsonl"
    scraped: list[str] = []
    with Recorder() as rec, FakeBinance({("BTCUSDT", "1h"): make_candles(400, start_ms=START)},
                                        now_ms=FIRST + 5_000) as fb:
        s = settings(binance=BinanceSettings(base_url=fb.url), state_file=tmp_path / "s.sqlite", log_file=journal,
                     kill_switch_file=kill, poll_delay_s=0.0, poll_retry_s=0.05, metrics_port=0,
                     alert_urls=[rec.url(TOKEN)]).for_strategy(model.backtest)
        done = threading.Event()

        def clock() -> None:   # the exchange's hours pass; after a few candles, scrape, then the kill switch
            while not done.wait(0.05):
                fb.now_ms += H
                lines = journal_lines(journal) if journal.exists() else []
                if sum("open_ms" in r for r in lines) >= 4 and not kill.exists():
                    try:
                        url = next(r["url"] for r in lines if r.get("event") == "metrics")
                        with urllib.request.urlopen(url, timeout=5) as resp:
                            scraped.append(resp.read().decode())
                    except (StopIteration, OSError):
                        pass                                   # the test fails below, the bot still stops
                    finally:
                        kill.touch()

        t = threading.Thread(target=clock, daemon=True)
        t.start()
        try:
            assert app.paper(argparse.Namespace(reset_halt=False, no_risk_limits=True), s, model, "BTCUSDT", "1h", H) == 0
        finally:
            done.set()
            t.join(5)
    assert scraped and "mlrisk_candles_total" in scraped[0]
    url = next(r["url"] for r in journal_lines(journal) if r.get("event") == "metrics")
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)                    # closed with the bot
    msgs = rec.messages()
    assert msgs[0] == "BTCUSDT paper: started: paper spot BTCUSDT 1h, model 01234567, polling feed"
    assert msgs[-1].startswith(f"BTCUSDT paper: stopped: kill switch file {kill} exists; equity ")


def test_exchange_mode_fills_are_the_executed_quantity_growing_and_a_halt_is_one_message():
    """Testnet/live facts: the user data stream's notes (as execution writes them) are a fill only when
    the order's executed quantity grew (a cancel with nothing executed is not; a partial fill then the
    rest are two); the simulated account's closed trades are not fills there; a halt persisted at
    start (the app's ``halted`` line) and the candle lines that follow are one halt, its lifting one more."""
    from decimal import Decimal as D

    from mlrisk.live.execution.stream import StreamUpdates
    from mlrisk.live.observe import Facts
    from mlrisk.live.state import OrderRecord, OrderStatus as S

    def note(cid: str, before: tuple, after: tuple) -> dict:
        o = OrderRecord(cid, "BTCUSDT", "BUY", "LIMIT", D("0.02"), 0, "entry", D("100"))
        b = OrderRecord(**{**o.__dict__, "status": before[0], "executed_qty": D(before[1])})
        a = OrderRecord(**{**o.__dict__, "status": after[0], "executed_qty": D(after[1])})
        [(kind, message)] = StreamUpdates._note(b, a, "stream")
        return {"event": kind, "message": message}

    f = Facts()
    assert f.read(note("mlr-1", (S.OPEN, "0"), (S.CANCELLED, "0"))) == []
    part = f.read(note("mlr-2", (S.OPEN, "0"), (S.OPEN, "0.005")))
    rest = f.read(note("mlr-2", (S.OPEN, "0.005"), (S.FILLED, "0.02")))
    assert [x.kind for x in part + rest] == ["fill", "fill"] and "executed 0.02" in rest[0].text
    line = {"time": "2026-01-01T00:00:00+00:00", "open_ms": 0, "position": {"side": "flat", "qty": 0.0,
            "entry_price": 0.0, "entries": 0}, "equity": 1.0, "halted": True, "halt_reason": "drawdown: x",
            "trades": [{"side": "long", "reason": "signal", "qty": 1.0, "exit_price": 1.0, "pnl": 1.0}],
            "exchange_orders": [{"client_order_id": "mlr-2", "side": "BUY", "quantity": "0.02", "status": "filled",
                                 "executed_qty": "0.02"}]}
    assert [x.kind for x in f.read({"event": "halted", "reason": "drawdown: equity 1 is 50% below"})] == ["halt"]
    assert f.read({"event": "start", "mode": "live"})[0].kind == "start"
    assert f.read(line) == [] and f.read(line) == []     # already halted; mlr-2's fill already told; no sim fills
    assert [x.kind for x in f.read({**line, "halted": False})] == ["resume"]
