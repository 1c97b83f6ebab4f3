from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_stage
from mlrisk.config import Params, load_params, parse_params
from mlrisk.errors import ParamsError


def test_shipped_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.source == "sample"


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


@pytest.mark.parametrize("patch, key", [
    ({"trian": {"epochs": 3}}, "trian"),
    ({"split": {"train": 1.5}}, "split.train"),
    ({"data": {"symbol": ""}}, "data.symbol"),
])
def test_stage_stops_before_any_work_on_bad_params(tmp_path: Path, patch, key):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in patch.items():
        params.setdefault(section, {}).update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out_dir = tmp_path / "raw"
    out_dir.mkdir()
    sentinel = out_dir / "BTCUSDT-1h.parquet"
    sentinel.write_bytes(b"old")
    r = run_stage("fetch", "--out-dir", str(out_dir), "--quality", str(tmp_path / "q.json"), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert key in lines[0] and lines[0].startswith("error: fetch: params.yaml:")
    assert sentinel.read_bytes() == b"old"
    assert not (tmp_path / "q.json").exists()


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path):
    f = tmp_path / "params.yaml"
    f.write_text("data:\n  source: sample\n   symbol: X\n")
    with pytest.raises(ParamsError, match="line 3"):
        load_params(f)


def test_defaults_match_model():
    assert Params().features.names == ["upper_wick", "lower_wick", "close_pct", "volume_pct"]
