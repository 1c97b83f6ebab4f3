"""Issue 9 under DVC and between stages: downloads are dependencies, failed runs are reported
truthfully and recoverable, any invalid params file stops `dvc repro` with mlrisk's message, and
damaged files between stages are named. DVC runs in a throw-away copy of the repository on a small
part of the sample (fetch and preprocess only: seconds, not the whole pipeline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, run_stage, synthetic_candles
from mlrisk.errors import DataError
from mlrisk.stage import run_stage as run_stage_in_process

SMALL = {"data": {"start": "2024-06-01"}, "features": {"seq_len": 16}}


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"{r.args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def _set_params(repo: Path, **sections: dict) -> None:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**SMALL, **sections}.items():
        p[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and (not f.startswith(("data/", "models/", "reports/")) or f.endswith(".gitignore")):
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp_path / f)
    shutil.copytree(ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "tmp*"), dirs_exist_ok=True)
    (tmp_path / "dvc.lock").unlink(missing_ok=True)
    _set_params(tmp_path)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


# --------------------------------------------------------------------------- item 1
@pytest.mark.slow
def test_replacing_a_listed_file_reruns_fetch(repo: Path):
    csv = repo / "data/files/BTCUSDT-1h-2024-01.csv"
    first = synthetic_candles(200, price=40_000.0)
    first[["open_time", "open", "high", "low", "close", "volume"]].assign(
        open_time=first["open_time"].astype("int64")).to_csv(csv, index=False, header=False)
    _set_params(repo, data={"source": "file", "files": ["data/files/BTCUSDT-1h-2024-01.csv"], "start": None})
    _ok(_dvc("repro", "fetch", cwd=repo))
    raw = repo / "data/raw/BTCUSDT-1h.parquet"
    assert pd.read_parquet(raw)["close"].iloc[0] == pytest.approx(first["close"].iloc[0])
    assert "didn't change" in _ok(_dvc("repro", "fetch", cwd=repo))
    second = synthetic_candles(200, seed=5, price=41_000.0)  # a refreshed download, same name
    second[["open_time", "open", "high", "low", "close", "volume"]].assign(
        open_time=second["open_time"].astype("int64")).to_csv(csv, index=False, header=False)
    out = _ok(_dvc("repro", "fetch", cwd=repo))
    assert "Running stage 'fetch'" in out
    assert pd.read_parquet(raw)["close"].iloc[0] == pytest.approx(second["close"].iloc[0])


def test_a_listed_file_outside_data_files_is_a_clear_error(tmp_path: Path):
    csv = tmp_path / "elsewhere.csv"
    csv.write_text("1704067200000,1,1,1,1,1\n")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"].update({"source": "file", "files": [str(csv)]})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = run_stage("fetch", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "elsewhere.csv is outside data/files/: move or copy it there" in r.stderr


# --------------------------------------------------------------------------- item 7
@pytest.mark.slow
def test_a_failed_stage_under_dvc_says_its_outputs_are_gone_and_they_come_back(repo: Path):
    _ok(_dvc("repro", "preprocess", cwd=repo))
    outs = [repo / "data/processed/train.parquet", repo / "models/preprocess.json"]
    good = [f.read_bytes() for f in outs]
    _set_params(repo, features={"seq_len": 1000})  # too long for the validation part: preprocess fails
    r = _dvc("repro", "preprocess", cwd=repo)
    assert r.returncode != 0
    line = next(x for x in r.stderr.splitlines() if x.startswith("error: preprocess:"))
    assert "part has no labelled windows" in line or "rows" in line
    assert "dvc removed this stage's previous outputs before running it: `dvc checkout preprocess` brings back" in line
    assert "outputs left as they were" not in r.stdout + r.stderr
    assert not any(f.exists() for f in outs)  # what the message says is true
    _ok(_dvc("checkout", "preprocess", cwd=repo))
    assert [f.read_bytes() for f in outs] == good
    # or: fix the cause and the next `dvc repro` restores them from the run cache without running
    _dvc("repro", "preprocess", cwd=repo)
    assert not outs[0].exists()
    _set_params(repo)
    out = _ok(_dvc("repro", "preprocess", cwd=repo))
    assert "Stage 'preprocess' is cached - skipping run, checking out outputs" in out
    assert [f.read_bytes() for f in outs] == good


@pytest.mark.slow
def test_a_persisted_stage_under_dvc_keeps_its_outputs_and_says_so(repo: Path):
    _ok(_dvc("repro", "fetch", cwd=repo))
    kept = [repo / "data/raw/BTCUSDT-1h.parquet", repo / "reports/data_quality.json"]
    good = [f.read_bytes() for f in kept]
    _set_params(repo, data={"start": "2030-01-01"})  # no candles: fetch fails
    r = _dvc("repro", "fetch", cwd=repo)
    assert r.returncode != 0
    line = next(x for x in r.stderr.splitlines() if x.startswith("error: fetch:"))
    assert "no BTCUSDT 1h candles" in line and line.endswith("(outputs left as they were)")
    assert [f.read_bytes() for f in kept] == good


def test_the_outputs_note_is_only_added_under_dvc(monkeypatch, capsys):
    def fail(params, args):
        raise DataError("boom")

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert run_stage_in_process("train", "", fail, argv=[]) == 2
    assert capsys.readouterr().err == "error: train: boom\n"
    monkeypatch.setenv("DVC_STAGE", "train")
    assert run_stage_in_process("train", "", fail, argv=[]) == 2
    assert "`dvc checkout train` brings back the last good ones" in capsys.readouterr().err

    def interrupted(params, args):
        raise KeyboardInterrupt

    assert run_stage_in_process("fetch", "", interrupted, argv=[], removes_outputs=False) == 130
    assert capsys.readouterr().err == "error: fetch: interrupted; outputs left as they were\n"


# --------------------------------------------------------------------------- item 8
@pytest.mark.slow
@pytest.mark.parametrize("text, words", [
    (None, "unknown key 'trian': did you mean 'train'?"),
    ("", "params.yaml is empty: it needs the sections data, features"),
    ("data:\n  source: sample\n", "params.yaml lacks backtest, data.interval, data.market, data.others, data.symbol, evaluate, features"),
])
def test_dvc_repro_stops_with_mlrisk_s_message_on_any_invalid_params_file(repo: Path, text, words):
    _ok(_dvc("repro", "fetch", cwd=repo))
    p = repo / "params.yaml"
    if text is None:  # a misspelled section that no stage reads by that name
        p.write_text(p.read_text().replace("\ntrain:", "\ntrian:"))
    else:
        p.write_text(text)
    for target in ([], ["preprocess"]):
        r = _dvc("repro", *target, cwd=repo)
        assert r.returncode != 0
        errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith("error: check_params: ") and words in errors[0], r.stderr
        assert "Running stage 'fetch'" not in r.stdout


@pytest.mark.slow
def test_a_valid_params_change_reruns_only_what_reads_it(repo: Path):
    _ok(_dvc("repro", "fetch", cwd=repo))
    _set_params(repo, backtest={"threshold": 0.1})
    out = _ok(_dvc("repro", "fetch", cwd=repo))
    assert "Running stage 'check_params'" in out and "Running stage 'fetch'" not in out


# --------------------------------------------------------------------------- item 6 (between stages)
@pytest.mark.parametrize("stage, path, producer", [
    ("preprocess", "data/raw/BTCUSDT-1h.parquet", "fetch"),
    ("backtest", "reports/predictions.parquet", "evaluate"),
])
def test_a_damaged_parquet_between_stages_is_one_line_naming_it(tmp_path: Path, stage, path, producer):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    f = tmp_path / path
    f.parent.mkdir(parents=True)
    f.write_bytes(b"PAR1 this is not a parquet file")
    r = run_stage(stage, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {stage}: {path} is damaged (") and f"run `dvc repro {producer}`" in r.stderr


def test_a_damaged_model_file_is_named_as_damaged(tmp_path: Path):
    from mlrisk.model.network import load_model

    f = tmp_path / "model.keras"
    f.write_bytes(b"PK\x03\x04 not a keras archive")
    with pytest.raises(DataError, match=r"model.keras is damaged \(.*`dvc checkout .*model.keras` restores"):
        load_model(f)
    with pytest.raises(DataError, match="not found"):
        load_model(tmp_path / "missing.keras")
