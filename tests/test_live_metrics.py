"""The bot's Prometheus endpoint (mlrisk.live.metrics, fed by the journal's observer): scraped over
HTTP after a scripted paper run and parsed with prometheus_client's own parser; the exchange-mode
lines, the feed's warnings and the exchange client's retries as metrics; off by default and on
loopback unless told otherwise; and once scraped by a real Prometheus server (Debian's package)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from observe_support import FIRST, H, LAST, MD5, free_port, journal_lines, scripted_run, settings
from prometheus_client.parser import text_string_to_metric_families

from mlrisk.errors import SettingsError
from mlrisk.live.journal import CandleLog
from mlrisk.live.metrics import METRICS, BotMetrics
from mlrisk.live.observe import Observer, watch

PROMETHEUS = Path("/usr/bin/prometheus")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the text format."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(journal: Path) -> str:
    url = next(r["url"] for r in journal_lines(journal) if r.get("event") == "metrics")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_a_scripted_paper_run_is_on_the_endpoint(tmp_path):
    got: dict[str, str] = {}
    journal = tmp_path / "bot.jsonl"
    scripted_run(tmp_path, settings(metrics_port=0), lambda: got.setdefault("text", scrape(journal)))
    m = samples(got["text"])
    a = (("account", "simulated"),)
    n = (LAST - FIRST) // H + 1
    assert m[("mlrisk_candles_total", ())] == n == 6
    assert m[("mlrisk_info", (("feed", "polling"), ("interval", "1h"), ("market", "futures"), ("mode", "paper"),
                              ("model_md5", MD5), ("symbol", "BTCUSDT")))] == 1
    assert m[("mlrisk_equity_usdt", a)] == 9000.0              # 10,000 less 2 % x 50,000 notional
    assert m[("mlrisk_position_quantity", a)] == 500.0 and m[("mlrisk_position_side", a)] == 1
    assert m[("mlrisk_fills_total", a)] == 1 and m[("mlrisk_orders_total", (("account", "simulated"), ("status", "placed")))] == 1
    assert m[("mlrisk_halted", ())] == 1 and m[("mlrisk_halts_total", (("reason", "drawdown"),))] == 1
    assert m[("mlrisk_realised_pnl_usdt", ())] == 0.0                # nothing closed
    assert m[("mlrisk_last_candle_close_timestamp_seconds", ())] == (LAST + H) / 1000
    assert m[("mlrisk_decision_latency_seconds_count", ())] == n == m[("mlrisk_close_to_decision_seconds_count", ())]
    assert m[("mlrisk_feed_websocket", ())] == 0 and m[("mlrisk_feed_stalls_total", ())] == 0
    age = m[("mlrisk_last_candle_age_seconds", ())]
    assert abs(age - (time.time() - (LAST + H) / 1000)) < 60
    names = {k[0] for k in m}
    # paper mode: no exchange account, no health value (nothing emits one yet): absent, never a made-up value
    assert not any(dict(k[1]).get("account") == "exchange" for k in m)
    assert "mlrisk_health_value" not in names and "mlrisk_exchange_errors_total" not in names
    # every metric on the page is in the documented table, with its unit in the name
    documented = {x[0] for x in METRICS}
    families = {f.name for f in text_string_to_metric_families(got["text"])}
    assert {f if f in documented else f + "_total" for f in families} <= documented
    assert all(x[0].startswith("mlrisk_") for x in METRICS)


def test_feed_warnings_and_exchange_retries_are_counted(tmp_path):
    """The fake exchange fails the candle history twice (HTTP 500, the client retrying each once): two
    history warnings (stalls) and two retried requests, from the feed's and the client's own code."""
    got: dict[str, str] = {}
    journal = tmp_path / "bot.jsonl"

    def faults(fb):
        fb.faults = [{"path": "/klines", "kind": "500"}] * 4

    scripted_run(tmp_path, settings(metrics_port=0), lambda: got.setdefault("text", scrape(journal)), faults)
    m = samples(got["text"])
    warnings = [r["message"] for r in journal_lines(journal) if r.get("event") == "warning"]
    assert len(warnings) == 2 and all(w.startswith("candle history not loaded") for w in warnings)
    assert m[("mlrisk_feed_warnings_total", (("reason", "history"),))] == 2 == m[("mlrisk_feed_stalls_total", ())]
    assert m[("mlrisk_exchange_errors_total", (("kind", "request"),))] == 2
    assert m[("mlrisk_candles_total", ())] == 6


def test_exchange_mode_lines_late_candles_and_health():
    """An exchange-mode candle line (the real account's equity and position, orders by status, a
    rejection), the polling feed's late warnings (a stall once 60 s late, counted once per candle), a
    websocket fallback and a health line."""
    from mlrisk.exchange import ExchangeClient
    from mlrisk.live.feeds.polling import PollingFeed
    from mlrisk.settings import BinanceSettings

    ex = ExchangeClient(BinanceSettings(base_url="http://127.0.0.1:9"), market="spot")   # never called here
    warned: list[str] = []
    feed = PollingFeed(ex, "BTCUSDT", "1h", H, poll_retry_s=1.0, max_stale_s=3600.0, warn=warned.append,
                       sleep=lambda s: None, stop=lambda: False)
    for late_ms in (5_000, 61_000, 90_000):          # the feed's own messages: one candle, later and later
        feed._late(0, H + late_ms, "the exchange does not serve it yet")
    m = BotMetrics(clock=lambda: 3_600.0 + 2.5)
    obs = Observer([m])
    log = CandleLog(None, None)
    log.observers.append(obs)
    log.event("start", mode="testnet", symbol="BTCUSDT", interval="1h", model_md5=MD5, market="spot", feed="websocket")
    for w in warned + ["websocket: the stream has not delivered the candle closing at x 2 s after its close"]:
        log.event("warning", message=w)
    rec = {"time": "1970-01-01T00:00:00+00:00", "open_ms": 0, "p_up": 0.7, "decision": "long",
           "orders": [{"leg": "entry", "side": "BUY", "type": "MARKET"}], "blocked": [],
           "position": {"side": "flat", "qty": 0.0, "entry_price": 0.0, "entries": 0}, "equity": 10000.0, "trades": [],
           "halted": False, "halt_reason": "", "latency_ms": 12.0,
           "exchange_orders": [{"client_order_id": "mlr-a", "side": "BUY", "quantity": "0.010", "status": "filled",
                                "executed_qty": "0.010"},
                               {"client_order_id": "mlr-b", "side": "BUY", "quantity": "0.010", "status": "rejected",
                                "executed_qty": "0", "reason": "-2010 insufficient balance"}],
           "exchange_position": "0.010", "account_equity": 9990.5}
    log.write(rec)
    log.event("health", signal="psi_rsi_14", value=0.31, threshold=0.25, crossed=True, action="warn")
    s = samples(m.text())
    ex = (("account", "exchange"),)
    assert s[("mlrisk_equity_usdt", ex)] == 9990.5 and s[("mlrisk_position_quantity", ex)] == 0.01
    assert s[("mlrisk_position_side", ex)] == 1 and s[("mlrisk_fills_total", ex)] == 1
    assert s[("mlrisk_orders_total", (("account", "exchange"), ("status", "filled")))] == 1
    assert s[("mlrisk_orders_total", (("account", "exchange"), ("status", "rejected")))] == 1
    assert s[("mlrisk_exchange_errors_total", (("kind", "rejected"),))] == 1
    assert s[("mlrisk_feed_warnings_total", (("reason", "late"),))] == 3
    assert s[("mlrisk_feed_warnings_total", (("reason", "websocket"),))] == 1
    assert s[("mlrisk_feed_stalls_total", ())] == 1                        # 61 s and 90 s late: one candle, one stall
    assert s[("mlrisk_feed_websocket", ())] == 1
    assert s[("mlrisk_close_to_decision_seconds_sum", ())] == 2.5          # the clock 2.5 s after the close
    assert s[("mlrisk_decision_latency_seconds_sum", ())] == 0.012
    assert s[("mlrisk_health_value", (("signal", "psi_rsi_14"),))] == 0.31
    assert s[("mlrisk_health_crossed", (("signal", "psi_rsi_14"),))] == 1
    assert obs.failures == 0


def test_off_by_default_loopback_unless_told_and_a_busy_port_is_one_line(tmp_path):
    log = CandleLog(None, None)
    w = watch(settings(), log)
    assert w.observer is None and log.observers == []            # nothing served, nothing observed
    with pytest.raises(SettingsError, match="metrics_host 0.0.0.0 is not a loopback address.*MLRISK_METRICS_PUBLIC"):
        settings(metrics_port=9108, metrics_host="0.0.0.0")
    assert settings(metrics_port=9108, metrics_host="0.0.0.0", metrics_public=True).metrics_host == "0.0.0.0"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SettingsError, match=f"MLRISK_METRICS_PORT: cannot serve metrics on 127.0.0.1:{port}"):
            watch(settings(metrics_port=port), CandleLog(None, None))


def test_a_failing_sink_never_reaches_the_loop(caplog):
    class Broken:
        def record(self, r):
            raise RuntimeError("boom")

        def fact(self, f):
            raise RuntimeError("boom")

        def close(self):
            pass

    m = BotMetrics()
    obs = Observer([Broken(), m])
    log = CandleLog(None, None)
    log.observers.append(obs)
    with caplog.at_level(logging.WARNING):
        log.event("start", mode="paper", symbol="BTCUSDT", interval="1h", model_md5=MD5, market="spot", feed="polling")
        log.event("halted", reason="drawdown: equity 1 is 50% below the peak 2")
        log.event("stop", reason="x")
    assert obs.failures > 1 and len([r for r in caplog.records if "metrics/alerts" in r.message]) == 1
    assert samples(m.text())[("mlrisk_halts_total", (("reason", "drawdown"),))] == 1   # the other sink still ran


def _prometheus() -> Path:
    if not PROMETHEUS.exists():
        if shutil.which("apt-get") is None:
            pytest.fail("/usr/bin/prometheus is missing and apt-get is not available: install Debian's prometheus")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus"], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus"], capture_output=True,
                               text=True)
        assert r.returncode == 0 and PROMETHEUS.exists(), f"apt-get install prometheus failed: {r.stderr[-1000:]}"
    return PROMETHEUS


def test_a_real_prometheus_scrapes_the_endpoint(tmp_path):
    binary = _prometheus()
    m = BotMetrics()
    host, port = m.serve("127.0.0.1", 0)
    log = CandleLog(None, None)
    log.observers.append(Observer([m]))
    log.event("start", mode="paper", symbol="BTCUSDT", interval="1h", model_md5=MD5, market="futures", feed="polling")
    for i in range(3):
        log.write({"time": "x", "open_ms": i * H, "p_up": None, "decision": "none", "orders": [], "blocked": [],
                   "position": {"side": "flat", "qty": 0.0, "entry_price": 0.0, "entries": 0}, "equity": 10000.0 + i,
                   "trades": [], "halted": False, "halt_reason": ""})
    web = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: mlrisk\n    static_configs:\n      - targets: ['{host}:{port}']\n")
    p = subprocess.Popen([str(binary), f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def query(q: str) -> list:
        url = f"http://127.0.0.1:{web}/api/v1/query?query={urllib.parse.quote(q)}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.load(resp)["data"]["result"]
        except OSError:
            return []

    try:
        deadline = time.monotonic() + 60
        result: list = []
        while time.monotonic() < deadline and p.poll() is None:
            result = query("mlrisk_candles_total")
            if result:
                break
            time.sleep(0.5)
        assert result, f"Prometheus never scraped the endpoint (exit {p.poll()})"
        assert float(result[0]["value"][1]) == 3 and result[0]["metric"]["job"] == "mlrisk"
        eq = query('mlrisk_equity_usdt{account="simulated"}')
        assert float(eq[0]["value"][1]) == 10002.0
        up = query('up{job="mlrisk"}')
        assert float(up[0]["value"][1]) == 1
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        m.close()


def test_the_last_close_has_no_sample_until_known_and_is_known_from_the_start_line():
    m = BotMetrics(clock=lambda: (LAST + 3 * H) / 1000)
    names = {k[0] for k in samples(m.text())}
    assert "mlrisk_last_candle_close_timestamp_seconds" not in names   # never 0 (1970) before it is known
    assert "mlrisk_last_candle_age_seconds" not in names
    m.record({"event": "start", "mode": "paper", "market": "futures", "symbol": "BTCUSDT", "interval": "1h",
              "feed": "polling", "model_md5": MD5, "resume_after": LAST})   # a restart: the state file's last candle
    got = samples(m.text())
    assert got[("mlrisk_last_candle_close_timestamp_seconds", ())] == (LAST + H) / 1000
    assert got[("mlrisk_last_candle_age_seconds", ())] == 2 * H / 1000


def test_a_late_candle_while_the_exchanges_clock_is_unreachable_is_a_stall_by_the_local_clock(monkeypatch):
    from types import SimpleNamespace

    from mlrisk.live.feeds import polling
    from mlrisk.live.observe import STALL_S, Facts

    close = FIRST + H
    monkeypatch.setattr(polling, "now_ms", lambda: close + 75_000)   # 75 s after the close, by the local clock
    warned: list[str] = []
    feed = SimpleNamespace(interval_ms=H, max_stale_ms=600_000, warnings=0, warn=warned.append, poll_retry_s=0.0,
                           exchange=SimpleNamespace(offset_ms=0), _stale_without_clock=lambda _t: None,
                           _wait=lambda _s: None)
    polling.PollingFeed._late(feed, FIRST, None, "connection refused")   # no clock from the exchange either
    assert "is late (75.0 s, local clock): connection refused" in warned[0]
    facts = Facts().read({"event": "warning", "message": warned[0]})
    assert 75 >= STALL_S and [f.kind for f in facts] == ["feed", "stall"]
