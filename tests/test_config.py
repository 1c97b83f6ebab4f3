from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_stage
from mlrisk.config.params import Params, load_params, parse_params
from mlrisk.errors import ParamsError


def test_shipped_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.source == "sample"


def test_the_shipped_default_backtests_the_perpetual_it_trades():
    p = load_params(ROOT / "params.yaml")
    assert p.backtest.futures_only() and p.data.market == "futures"  # it shorts at leverage 3: futures


@pytest.mark.parametrize("market, backtest, warned", [
    ("spot", {}, ["direction both", "leverage 3"]),                                      # the default strategy on spot
    ("spot", {"direction": "long", "leverage": 1, "sweep": {"leverages": [1, 2]}}, ["leverage 2"]),  # a sweep value
    ("spot", {"direction": "long", "leverage": 1, "sweep": {"thresholds": [0.1]}}, None),  # spot trades it as is
    ("futures", {}, None),
])
def test_check_params_warns_once_when_a_futures_strategy_runs_on_spot(tmp_path: Path, market, backtest, warned):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["market"] = market
    params["backtest"].update(backtest)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run_stage("check_params", "--out", str(tmp_path / "ok.txt"), "--dvc-yaml", str(ROOT / "dvc.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    if warned is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith("warning: check_params: the backtest shorts/leverages (")
        assert "on spot candles: set data.market: futures" in lines[0]
        assert all(w in lines[0] for w in warned)


@pytest.mark.parametrize("raw, key, words", [
    ({"trian": {"epochs": 3}}, "trian", ["unknown key", "did you mean 'train'"]),
    ({"split": {"train": 1.5}}, "split.train", ["1.5", "less than 1"]),
    ({"data": {"symbol": ""}}, "data.symbol", ["''", "at least 1 character"]),
    ({"train": {"epochs": 0}}, "train.epochs", ["greater than or equal to 1"]),
    ({"features": {"label": {"kind": "barier"}}}, "features.label.kind", ["'direction' or 'barrier'"]),
    ({"features": {"names": ["close_pct", "rsi"]}}, "features.names", ["unknown feature 'rsi'"]),
    ({"backtest": {"sweep": {"tresholds": [0.1]}}}, "backtest.sweep", ["did you mean 'thresholds'"]),
])
def test_bad_params_give_one_line_naming_the_key(raw, key, words):
    with pytest.raises(ParamsError) as e:
        parse_params(raw)
    msg = str(e.value)
    assert "\n" not in msg
    assert key in msg
    for w in words:
        assert w in msg


def test_split_fractions_must_leave_a_test_part():
    with pytest.raises(ParamsError, match="split.train \\+ split.val"):
        parse_params({"split": {"train": 0.8, "val": 0.2}})


def test_sweep_grid_is_the_cartesian_product():
    p = parse_params({"backtest": {"sweep": {"thresholds": [0.04, 0.08], "leverages": [1, 3, 7]}}})
    grid = p.backtest.sweep_grid()
    assert len(grid) == 6 and {"threshold": 0.08, "leverage": 7} in grid


@pytest.mark.parametrize("stage, patch, key", [
    ("fetch", {"trian": {"epochs": 3}}, "trian"),              # every stage checks the top-level keys
    ("fetch", {"data": {"symbol": ""}}, "data.symbol"),        # and the sections it reads
    ("check_params", {"split": {"train": 1.5}}, "split.train"),  # the whole file: check_params, upstream of every stage
])
def test_stage_stops_before_any_work_on_bad_params(tmp_path: Path, stage, patch, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in patch.items():
        params.setdefault(section, {}).update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out_dir = tmp_path / "raw"
    out_dir.mkdir()
    sentinel = out_dir / "BTCUSDT-1h.parquet"
    sentinel.write_bytes(b"old")
    args = (["--out-dir", str(out_dir), "--quality", str(tmp_path / "q.json")] if stage == "fetch"
            else ["--out", str(tmp_path / "q.json")])
    r = run_stage(stage, *args, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert key in lines[0] and lines[0].startswith(f"error: {stage}: params.yaml:")
    assert sentinel.read_bytes() == b"old"
    assert not (tmp_path / "q.json").exists()


def test_a_stage_validates_only_the_sections_it_reads(tmp_path: Path):
    from mlrisk.config.base import SECTIONS, load_sections
    from mlrisk.config.data import DataParams

    assert tuple(Params.model_fields) == SECTIONS
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({"data": {"symbol": "ETHUSDT"}, "split": {"train": 1.5}}))
    p = load_sections(f, {"data": DataParams})
    assert p.data.symbol == "ETHUSDT" and p.data.interval == "1h"  # absent keys: the defaults, as in Params
    with pytest.raises(ParamsError, match=r"split.train = 1.5: Input should be less than 1"):
        load_params(f)
    f.write_text(yaml.safe_dump({"data": {"symbl": "ETHUSDT"}}))
    with pytest.raises(ParamsError, match=r"params.yaml: unknown key 'data.symbl': did you mean 'data.symbol'\? allowed here: source,"):
        load_sections(f, {"data": DataParams})


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path):
    f = tmp_path / "params.yaml"
    f.write_text("data:\n  source: sample\n   symbol: X\n")
    with pytest.raises(ParamsError, match="line 3"):
        load_params(f)


def test_defaults_match_model():
    assert Params().features.names == ["upper_wick", "lower_wick", "close_pct", "volume_pct"]
