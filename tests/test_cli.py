"""Command-line behaviour: --help, check-params, secrets, and numba's on-disk compile cache."""

import subprocess
import sys

import pytest

from conftest import ROOT, run_stage
from mlrisk.cli import main
from mlrisk.settings import BinanceSettings


@pytest.mark.parametrize("stage", ["check_params", "fetch", "preprocess", "train", "evaluate", "backtest", "report"])
def test_every_stage_has_help(stage, tmp_path):
    r = run_stage(stage, "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--params" in r.stdout and "DVC stage" in r.stdout


@pytest.mark.parametrize("cmd", ["repro", "report", "diff", "check-params"])
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and f"usage: mlrisk {cmd}" in capsys.readouterr().out


def test_the_mlrisk_entry_point_lists_its_subcommands():
    r = subprocess.run([sys.executable, "-m", "mlrisk.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("repro", "report", "diff", "check-params"):
        assert cmd in r.stdout


def test_report_summary_without_a_pipeline_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from mlrisk.cli import _summary

    assert _summary() == 2
    assert capsys.readouterr().err.strip() == "error: reports/index.html not found: run `mlrisk repro` first"


def test_check_params_prints_effective_values(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check-params"]) == 0
    out = capsys.readouterr().out
    assert "threshold: 0.08" in out and "seq_len:" in out


def test_check_params_reports_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("backtest:\n  leverage: 500\n")
    assert main(["check-params", "--params", str(bad)]) == 2
    assert "backtest.leverage = 500" in capsys.readouterr().err


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("MLRISK_BINANCE_API_KEY", "key-123-secret")
    monkeypatch.setenv("MLRISK_BINANCE_API_SECRET", "shh-456-secret")
    s = BinanceSettings()
    assert s.api_secret.get_secret_value() == "shh-456-secret"
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "shh-456" not in text and "key-123" not in text


def test_the_engine_is_compiled_once_and_cached_on_disk():
    code = ("import numpy as np; from mlrisk.backtest import engine as E; n=50; c=np.linspace(100,110,n);"
            "p=np.full(E.N_PARAMS,0.0); p[E.P_INITIAL]=1e4; p[E.P_LEVERAGE]=1; p[E.P_ORDER_SIZE]=.1; p[E.P_PYRAMID_MAX]=1;"
            "p[E.P_LIMIT_TTL]=1; E.run(c,c*1.01,c*0.99,c,np.full(n,0.9),p); print(sum(E.run_kernel.stats.cache_hits.values()))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)]
    assert int(runs[1]) >= 1  # the second process loaded the compiled kernel from disk


def test_holdout_needs_a_holdout_and_says_how(tmp_path, capsys, monkeypatch):
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/raw").mkdir(parents=True)
    from mlrisk.data.sources import load_sample

    load_sample("BTCUSDT", "1h").to_parquet(tmp_path / "data/raw/BTCUSDT-1h.parquet")
    assert main(["holdout"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluate.holdout is 0" in err


@pytest.mark.parametrize("cmd", ["leaderboard", "holdout"])
def test_new_commands_have_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage: mlrisk " + cmd in capsys.readouterr().out


def test_mlrisk_live_is_the_bot_s_own_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["live", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--replay" in out and "MLRISK_" in out


def _git(*args: str, cwd) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_version_outside_a_git_work_tree_is_the_package_version_only(tmp_path, monkeypatch):
    from importlib.metadata import version

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))   # no repository above tmp_path either
    for argv in (["--version"], ["live", "--version"]):
        r = subprocess.run([sys.executable, "-m", "mlrisk.cli", *argv], cwd=tmp_path, capture_output=True, text=True)
        assert (r.returncode, r.stdout, r.stderr) == (0, f"mlrisk {version('mlrisk')}\n", "")


def test_version_in_a_git_work_tree_names_the_revision_and_uncommitted_changes(tmp_path, monkeypatch, capsys):
    from importlib.metadata import version

    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    _git("add", "params.yaml", cwd=tmp_path)
    _git("commit", "-q", "-m", "first", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    short = _git("rev-parse", "--short", "HEAD", cwd=tmp_path)

    def shown(argv: list[str]) -> str:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
        return capsys.readouterr().out

    assert shown(["--version"]) == f"mlrisk {version('mlrisk')} (git {short})\n"
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert shown(["--version"]) == shown(["live", "--version"]) == f"mlrisk {version('mlrisk')} (git {short}-dirty)\n"
