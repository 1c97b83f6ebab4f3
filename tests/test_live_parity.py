"""The live bot against the pipeline, in a throw-away copy of the repository with a tiny pipeline
(the last ~3.5 months of the sample, a 4-unit LSTM, 2 epochs) and a threshold low enough to trade often:

- parity: ``mlrisk live --replay`` of the test period gives the evaluate stage's P(up) (to 1e-6), the
  backtest stage's trades (times, sides, exit reasons) and its final equity (1e-9 relative);
- the pinned model: a model file, parameters or symbol that differ from dvc.lock are refused;
- ``--rev``: the model of a git tag, read through dvc.api from a DVC remote that is a local directory
  in a fresh clone without a cache, trades identically; a corrupted remote object is refused."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

SMALL = {
    "data": {"start": "2024-06-01"},
    "features": {"seq_len": 16},
    "train": {"layers": [{"type": "lstm", "units": 4}], "dense": [4], "epochs": 2, "batch_size": 128},
    "backtest": {"threshold": 0.01, "sweep": {"thresholds": [0.01], "leverages": [3]}},
}
RAW = "data/raw/BTCUSDT-1h.parquet"


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": str(ROOT / "src")}


def _sh(*args: str, cwd: Path, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=900)
    if ok:
        assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _git(*args: str, cwd: Path) -> None:
    _sh("git", "-c", "user.email=t@t", "-c", "user.name=t", *args, cwd=cwd)


def _live(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    return _sh(sys.executable, "-m", "mlrisk.live", *args, cwd=cwd, ok=ok)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return _tiny_repo(tmp_path_factory.mktemp("liverepo"))


def _tiny_repo(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("data/", "models/", "reports/", "live/")) or f.endswith(".gitignore"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    shutil.copytree(ROOT / ".dvc", dst / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "tmp*"), dirs_exist_ok=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    _sh("git", "init", "-q", "-b", "main", cwd=dst)
    _git("add", "-A", cwd=dst)
    _git("commit", "-qm", "init", cwd=dst)
    _sh(sys.executable, "-m", "dvc", "repro", cwd=dst)
    _git("add", "-A", cwd=dst)
    _git("commit", "-qm", "tiny pipeline", cwd=dst)
    return dst


def _test_start(repo: Path) -> str:
    pred = pd.read_parquet(repo / "reports/predictions.parquet")
    return pred["open_time"].iloc[0].strftime("%Y-%m-%dT%H:%M")


def _replay(repo: Path, cwd: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict], pd.DataFrame]:
    log, trades = cwd / "replay.jsonl", cwd / "replay_trades.csv"
    log.unlink(missing_ok=True)
    r = _live("--replay", str(repo / RAW), "--start", _test_start(repo), "--log-file", str(log),
              "--trades-out", str(trades), *extra, cwd=cwd)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return r, lines, pd.read_csv(trades)


def test_replay_of_the_test_period_matches_evaluate_and_backtest(repo: Path):
    r, lines, trades = _replay(repo, repo, "--no-risk-limits")   # the backtest has no risk limits
    records = [x for x in lines if "event" not in x]
    end = lines[-1]
    assert end["event"] == "replay_end" and end["candles"] == len(records)
    pred = pd.read_parquet(repo / "reports/predictions.parquet")
    # one decision per test candle, in order, keyed by open time
    assert [x["open_ms"] for x in records] == (pred["open_time"].astype("int64")).tolist()
    p_live = np.array([np.nan if x["p_up"] is None else x["p_up"] for x in records])
    p_eval = pred["p_up"].to_numpy()
    assert np.array_equal(np.isnan(p_live), np.isnan(p_eval))          # the same first full window
    assert np.nanmax(np.abs(p_live - p_eval)) < 1e-6
    ref = pd.read_csv(repo / "reports/trades.csv")
    assert len(ref) >= 10, "the tiny pipeline should trade often enough to make parity meaningful"
    cols = ["entry_time", "exit_time", "side", "exit_reason", "entry_kind"]
    pd.testing.assert_frame_equal(trades[cols], ref[cols])
    np.testing.assert_allclose(trades["pnl"], ref["pnl"], rtol=1e-9, atol=1e-9)
    equity_csv = pd.read_csv(repo / "reports/plots/equity.csv")["equity"].to_numpy()
    # equity at every close but the last (there the backtest closes out; the replay logs the close first)
    np.testing.assert_allclose([x["equity"] for x in records][:-1], equity_csv[:-1], rtol=1e-9)
    bt = json.loads((repo / "reports/metrics/backtest.json").read_text())
    assert end["equity"] == pytest.approx(bt["final_equity"], rel=1e-9)
    assert end["equity"] == pytest.approx(equity_csv[-1], rel=1e-9)
    assert f"{len(ref)} trades" in r.stdout and "risk limits off (--no-risk-limits), like the backtest" in r.stdout


def test_a_replay_of_the_futures_test_period_gives_the_backtests_trades_funding_included(repo: Path):
    """The acceptance line of issue 18: with ``data.market: futures`` the replay reads the funding and mark
    tables beside the candles (data/raw), joins them like the backtest stage (market_columns) and uses the
    same brackets, lot step and minimum notional (market_params): the same trades, funding included."""
    from mlrisk.backtest.futures import market_columns, market_params
    from mlrisk.backtest.runner import run_backtest
    from mlrisk.config.params import load_params
    from mlrisk.data.derivatives import funding_path, load_funding, load_mark, mark_path

    futures_repo = repo  # the shipped params.yaml trades the perpetual: the tiny pipeline is a futures one
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["market"] == "futures"
    raw = futures_repo / "data/raw"
    r, lines, trades = _replay(futures_repo, futures_repo, "--no-risk-limits")
    assert "futures: funding history, liquidation on the mark price" in r.stdout
    cols = ["entry_time", "exit_time", "side", "exit_reason", "entry_kind"]

    def key(df: pd.DataFrame) -> pd.DataFrame:
        return df[cols].assign(entry_time=pd.to_datetime(df["entry_time"], utc=True).dt.as_unit("ms"),
                               exit_time=pd.to_datetime(df["exit_time"], utc=True).dt.as_unit("ms")).reset_index(drop=True)

    def same(ref: pd.DataFrame) -> None:
        assert len(ref) >= 10 and (ref["funding"] != 0).any(), "the tiny futures pipeline should trade and pay funding"
        pd.testing.assert_frame_equal(key(trades), key(ref))
        for c in ("entry_price", "exit_price", "qty", "margin", "funding", "pnl"):
            np.testing.assert_allclose(trades[c], ref[c], rtol=1e-9, atol=1e-9, err_msg=c)

    # the contract the backtest stage follows (market_columns onto the predictions, market_params' brackets,
    # lot step and minimum notional), computed here: the replay's trades are its trades
    pred = pd.read_parquet(futures_repo / "reports/predictions.parquet")
    pred = pred.drop(columns=[c for c in ("funding_rate", "mark_open", "mark_high", "mark_low") if c in pred.columns])
    pred = pd.concat([pred, market_columns(pred["open_time"], load_funding(funding_path(raw, "BTCUSDT")),
                                           load_mark(mark_path(raw, "BTCUSDT", "1h")), 3_600_000)], axis=1)
    bp, brackets = market_params("BTCUSDT", "futures", load_params(futures_repo / "params.yaml").backtest)
    contract = run_backtest(pred, bp, 3_600_000, brackets)
    same(contract.trades)
    equity = [x["equity"] for x in lines if "event" not in x]
    np.testing.assert_allclose(equity[:-1], contract.equity[:-1], rtol=1e-9)
    assert lines[-1]["equity"] == pytest.approx(contract.equity[-1], rel=1e-9)
    # and the backtest stage's own outputs (the acceptance line)
    bt = json.loads((futures_repo / "reports/metrics/backtest.json").read_text())
    same(pd.read_csv(futures_repo / "reports/trades.csv"))
    records = [x for x in lines if "event" not in x]
    equity_csv = pd.read_csv(futures_repo / "reports/plots/equity.csv")["equity"].to_numpy()
    np.testing.assert_allclose([x["equity"] for x in records][:-1], equity_csv[:-1], rtol=1e-9)
    assert lines[-1]["equity"] == pytest.approx(bt["final_equity"], rel=1e-9)


def test_a_model_that_differs_from_dvc_lock_is_refused(repo: Path, tmp_path: Path):
    model = repo / "models/model.keras"
    saved = model.read_bytes()
    try:
        model.write_bytes(saved + b"\0")
        r = _replay_fail(repo)
        assert r.returncode == 2 and "models/model.keras has MD5" in r.stderr and "dvc.lock records" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        model.write_bytes(saved)
    r = _live("--replay", str(repo / RAW), "--symbol", "ETHUSDT", cwd=repo, ok=False)
    assert r.returncode == 2 and "not the model's symbol BTCUSDT" in r.stderr
    r = _live("--replay", str(repo / RAW), "--interval", "15m", cwd=repo, ok=False)
    assert r.returncode == 2 and "not the model's interval 1h" in r.stderr
    r = _live("--replay", str(repo / RAW), "--market", "spot", cwd=repo, ok=False)  # spot cannot short
    assert r.returncode == 2 and "spot cannot short" in r.stderr
    r = _sh(sys.executable, "-m", "mlrisk.live", "--mode", "testnet", "--market", "futures", "--max-leverage", "2",
            cwd=repo, ok=False, env={"MLRISK_BINANCE_API_KEY": "k" * 16, "MLRISK_BINANCE_API_SECRET": "s" * 16})
    assert r.returncode == 2 and "exceeds MLRISK_MAX_LEVERAGE 2" in r.stderr
    params = repo / "params.yaml"
    text = params.read_text()
    try:
        params.write_text(text.replace("threshold: 0.01", "threshold: 0.02", 1))
        r = _replay_fail(repo)
        assert r.returncode == 2 and "backtest threshold differ from what the backtest stage ran" in r.stderr
    finally:
        params.write_text(text)


def _replay_fail(repo: Path) -> subprocess.CompletedProcess:
    return _live("--replay", str(repo / RAW), cwd=repo, ok=False)


def test_rev_reads_the_tagged_model_from_a_local_dvc_remote_in_a_fresh_clone(repo: Path, tmp_path: Path):
    remote = tmp_path / "remote"
    _sh(sys.executable, "-m", "dvc", "remote", "add", "-d", "store", str(remote), cwd=repo)
    _sh(sys.executable, "-m", "dvc", "push", "-q", cwd=repo)
    _git("add", ".dvc/config", cwd=repo)
    _git("commit", "-qm", "remote", cwd=repo)
    _git("tag", "model-v1", cwd=repo)
    clone = tmp_path / "clone"
    _sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "models/model.keras").exists() and not (clone / ".dvc/cache").exists()
    from dvc.repo import Repo

    with Repo(str(clone)) as dvc_repo:  # the model is declared as a DVC artifact in dvc.yaml
        art = dvc_repo.artifacts.read()["dvc.yaml"]["lstm-model"]
    assert art.path == "models/model.keras" and art.type == "model"
    _, _, trades = _replay(repo, clone, "--repo", str(clone), "--rev", "model-v1")
    ref = pd.read_csv(repo / "reports/trades.csv")
    assert trades[["entry_time", "exit_time", "side", "exit_reason"]].equals(ref[["entry_time", "exit_time", "side", "exit_reason"]])
    # the hash check is real: a corrupted object in the remote is refused
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = next(o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == "models/model.keras")
    obj = remote / "files" / "md5" / md5[:2] / md5[2:]
    assert obj.exists()
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes() + b"tampered")
    fresh = tmp_path / "clone2"
    _sh("git", "clone", "-q", str(repo), str(fresh), cwd=tmp_path)
    r = _live("--replay", str(repo / RAW), "--repo", str(fresh), "--rev", "model-v1", cwd=fresh, ok=False)
    assert r.returncode == 2 and "models/model.keras at model-v1 has MD5" in r.stderr, r.stderr
    r = _live("--replay", str(repo / RAW), "--repo", str(fresh), "--rev", "no-such-tag", cwd=fresh, ok=False)
    assert r.returncode == 2 and "no-such-tag" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _wait_records(log: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> list[dict]:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        recs = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        if sum("event" not in r for r in recs) >= n:
            return recs
        if proc.poll() is not None:
            raise AssertionError(f"the bot exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} candles logged in {timeout} s")


def test_paper_mode_against_the_local_server_runs_until_sigterm_resumes_and_stops_on_the_kill_switch(repo: Path,
                                                                                                         tmp_path: Path):
    import signal
    import threading

    from fake_binance import FakeBinance, make_funding, make_mark

    raw = pd.read_parquet(repo / RAW)
    rows = [[int(t.value // 10**6), repr(o), repr(h), repr(lo), repr(c), repr(v), int(t.value // 10**6) + 3_599_999,
             "0", 0, "0", "0", "0"] for t, o, h, lo, c, v in raw[["open_time", "open", "high", "low", "close", "volume"]]
            .itertuples(index=False)]
    pred = pd.read_parquet(repo / "reports/predictions.parquet")
    start = int(pred["open_time"].iloc[0].value // 10**6)
    key, secret = "KEYtestABCDEF0123456789", "SECRETtestZYXWV9876543210"
    state, log, kill = tmp_path / "state.sqlite", tmp_path / "bot.jsonl", tmp_path / "STOP"
    # paper mode on futures reads each candle's funding settlements and mark candle from the exchange
    funding = make_funding(len(rows) // 8 + 2, start_ms=rows[0][0] // (8 * 3_600_000) * 8 * 3_600_000, jitter_ms=11)
    with FakeBinance({("BTCUSDT", "1h"): rows}, now_ms=start + 5_000, funding={"BTCUSDT": funding},
                     mark={("BTCUSDT", "1h"): make_mark(rows)}) as fb:
        ticking = threading.Event()

        def tick():
            while not ticking.wait(0.4):  # one hour of exchange time per 0.4 s
                fb.now_ms += 3_600_000

        threading.Thread(target=tick, daemon=True).start()
        env = {**_env(), "MLRISK_BINANCE_BASE_URL": fb.url, "MLRISK_BINANCE_API_KEY": key,
               "MLRISK_BINANCE_API_SECRET": secret}
        args = [sys.executable, "-m", "mlrisk.live", "--mode", "paper", "--state-file", str(state),
                "--log-file", str(log), "--kill-switch-file", str(kill), "--poll-delay-s", "0", "--poll-retry-s", "0.1",
                "--max-stale-s", "86400"]
        try:
            p1 = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_records(log, 4, p1)
            p1.send_signal(signal.SIGTERM)
            out1, err1 = p1.communicate(timeout=60)
            assert p1.returncode == 0, err1
            first = [json.loads(x) for x in log.read_text().splitlines()]
            assert first[-1]["event"] == "stop" and first[-1]["reason"] == "SIGTERM"
            n1 = sum("event" not in r for r in first)
            p2 = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_records(log, n1 + 4, p2)
            kill.touch()
            out2, err2 = p2.communicate(timeout=60)
            assert p2.returncode == 0, err2
        finally:
            ticking.set()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[-1]["event"] == "stop" and "kill switch" in lines[-1]["reason"]
    starts = [r for r in lines if r.get("event") == "start"]
    assert len(starts) == 2 and starts[1]["resume_after"] == first[-1]["last_candle"]
    recs = [r for r in lines if "event" not in r]
    opens = [r["open_ms"] for r in recs]
    assert opens == list(range(opens[0], opens[0] + len(opens) * 3_600_000, 3_600_000))  # each candle once, no gap
    # paper mode computes the evaluate stage's P(up) on the live candles too (windows after the test start)
    p_eval = dict(zip(pd.DatetimeIndex(pred["open_time"]).as_unit("ms").asi8.tolist(), pred["p_up"]))
    checked = [(r["p_up"], p_eval[r["open_ms"]]) for r in recs if not math.isnan(p_eval.get(r["open_ms"], math.nan))]
    assert checked and max(abs(a - b) for a, b in checked) < 1e-6
    # secrets never reach anything the bot wrote
    written = [f.read_bytes() for f in tmp_path.glob("state.sqlite*")] + [log.read_bytes()]
    for text in written + [(out1 + err1 + out2 + err2).encode()]:
        assert key.encode() not in text and secret.encode() not in text
    assert "live: " in err1 and "equity" in err1  # the readable line on stderr
