"""The README's commands are the ones CI runs, and its documented experiment is valid."""

import re
import shlex

import shutil

import yaml
from dvc.utils.hydra import apply_overrides

from conftest import ROOT
from mlrisk.config.params import parse_params

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    test_cmd = "bash scripts/setup.sh && .venv/bin/python -m pytest -q"
    assert test_cmd in README
    assert test_cmd in (ROOT / ".ci/run").read_text()
    assert "bash scripts/setup.sh && . .venv/bin/activate && dvc repro" in README


def test_the_original_tool_experiment_is_valid_params(tmp_path):
    block = re.search(r"<!-- original-experiment:start -->\s*```bash\n(.*?)```", README, re.S).group(1)
    args = shlex.split(block.replace("\\\n", " "))
    assert args[:3] == ["dvc", "exp", "run"]
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-S"]
    assert len(overrides) > 20
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    apply_overrides(str(tmp_path / "params.yaml"), overrides)  # what `dvc exp run -S` does
    p = parse_params(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert p.data.interval == "15m" and p.features.seq_len == 100 and p.features.label.kind == "barrier"
    assert [(lp.units, lp.dropout, lp.batch_norm) for lp in p.train.layers] == [(96, 0.2, True), (96, 0.3, True), (96, 0.3, True)]
    assert p.train.learning_rate == 8e-5 and p.train.output == "softmax"
    b = p.backtest
    assert (b.entry, b.exit_check, b.leverage, b.order_size, b.threshold, b.take_profit, b.stop_loss) == \
        ("limit", "close", 7.0, 0.1, 0.08, 0.01, 0.01)
    assert b.sweep_grid() == [{"threshold": t, "leverage": 7} for t in (0.04, 0.06, 0.08, 0.1, 0.12, 0.16)]
