"""The walk-forward fold cache's key covers exactly what a fold runs: editing code the fold does not
run (scoring, significance, the report, the live bot, another params section's schema) keeps every
cached fold, editing code it runs retrains them all. Keys only (no training): the code fingerprint
is computed over an edited copy of the package, never by editing the real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, synthetic_candles
from mlrisk.config.params import parse_params
from mlrisk.evaluation.fold import FoldSettings, code_fingerprint, fold_key
from mlrisk.evaluation.folds import plan_folds

PARAMS = {"features": {"seq_len": 8}, "evaluate": {"walk_forward": {"train": 400, "test": 300}}}
CANDLES = synthetic_candles(1500, seed=4)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A copy of the package's source, to edit."""
    shutil.copytree(ROOT / "src" / "mlrisk", tmp_path / "mlrisk", ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    return tmp_path


def keys(src: Path, **sections: dict) -> list[str]:
    params = parse_params({**PARAMS, **sections})
    wf = params.evaluate.walk_forward
    folds = plan_folds(len(CANDLES), wf, params.features.label.horizon + params.features.seq_len + wf.embargo)
    code = code_fingerprint(src)
    return [fold_key(CANDLES, f, FoldSettings.of(params), code) for f in folds]


def edit(f: Path, old: str, new: str) -> None:
    text = f.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {f}"
    f.write_text(text.replace(old, new))


@pytest.mark.parametrize("rel", ["evaluation/significance.py", "evaluation/scoring.py", "evaluation/walkforward.py",
                                 "evaluation/folds.py", "report/dashboard.py", "live/loop.py", "backtest/engine.py",
                                 "config/evaluate.py", "config/params.py", "stage.py"])
def test_editing_code_a_fold_does_not_run_keeps_every_key(src: Path, rel: str):
    before = keys(src)
    assert len(before) >= 3
    f = src / "mlrisk" / rel
    f.write_text(f.read_text() + "\n# edited\n")
    assert keys(src) == before


def test_a_message_in_the_backtest_section_keeps_every_key(src: Path):
    before = keys(src)
    edit(src / "mlrisk/config/backtest.py", "backtest.sweep.{key} is empty", "backtest.sweep.{key} has no values")
    assert keys(src) == before


@pytest.mark.parametrize("rel, old, new", [
    ("features.py", 'return c["close"] / c["close"].shift(1) - 1.0', 'return c["close"] / c["close"].shift(2) - 1.0'),
    ("data/preprocess.py", "\n", "\n# edited\n"),
    ("model/training.py", "\n", "\n# edited\n"),        # imported inside run_fold: lazy imports count too
    ("model/inference.py", "\n", "\n# edited\n"),
    ("evaluation/baselines.py", "\n", "\n# edited\n"),
    ("config/features.py", "feature names must be unique", "feature names must differ"),
])
def test_editing_code_a_fold_runs_changes_every_key(src: Path, rel: str, old: str, new: str):
    before = keys(src)
    f = src / "mlrisk" / rel
    if old == "\n":
        f.write_text(f.read_text() + new)
    else:
        edit(f, old, new)
    after = keys(src)
    assert len(after) == len(before) and all(a != b for a, b in zip(before, after))


@pytest.mark.parametrize("sections", [
    {"backtest": {"threshold": 0.12}}, {"split": {"train": 0.6}},
    {"evaluate": {"confidence_bins": 5, "holdout": 10, "walk_forward": {"train": 400, "test": 300}}},
    {"data": {"gap_policy": "keep"}},
])
def test_parameters_a_fold_does_not_read_keep_every_key(src: Path, sections: dict):
    assert keys(src, **sections) == keys(src)


@pytest.mark.parametrize("sections", [
    {"features": {"seq_len": 8, "clip": 0.01}}, {"train": {"epochs": 3}}, {"data": {"interval": "15m"}},
    {"evaluate": {"walk_forward": {"train": 400, "test": 300, "epochs": 2}}},
    {"evaluate": {"walk_forward": {"train": 400, "test": 300, "embargo": 1}}},
])
def test_parameters_a_fold_reads_change_every_key(src: Path, sections: dict):
    before, after = keys(src), keys(src, **sections)
    assert len(after) == len(before) and all(a != b for a, b in zip(before, after))
