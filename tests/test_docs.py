"""The docs site: it builds with `mkdocs build --strict` (a broken link or anchor fails), its generated
parameters and live-settings tables cover every field, every field is described, the built site
loads nothing from the network, and the experiment it documents is valid params."""

import re
import shlex
import shutil
from typing import Literal

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort
from pydantic import BaseModel, Field, create_model

from conftest import ROOT
from mlrisk.config.params import parse_params
from mlrisk.docs_reference import (field_rows, live_settings_model, missing_descriptions, params_model,
                                   params_reference, settings_reference)


def _build(config_file, site_dir):
    build(load_config(str(config_file), site_dir=str(site_dir), strict=True))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    _build(ROOT / "mkdocs.yml", out)
    return out


def test_the_parameters_page_lists_every_key_of_every_section(site):
    page = (site / "parameters.html").read_text()
    sections = list(params_model().model_fields)
    assert sections  # data, features, ...
    for name in sections:
        assert f'id="{name}"' in page  # one heading per section, linkable as parameters.md#<section>
    paths = [r.path for r in field_rows(params_model())]
    assert "train.layers[].units" in paths and "evaluate.walk_forward.train" in paths and "backtest.sweep" in paths
    missing = [p for p in paths if f"<code>{p}</code>" not in page]
    assert not missing, f"not on the parameters page: {missing}"


def test_the_live_page_lists_every_setting_with_its_variable(site):
    page = (site / "live.html").read_text()
    names = [f"MLRISK_{n.upper()}" for n in live_settings_model().model_fields if n != "binance"]
    names += ["MLRISK_BINANCE_API_KEY", "MLRISK_BINANCE_API_SECRET", "MLRISK_BINANCE_BASE_URL"]
    missing = [n for n in names if f"<code>{n}</code>" not in page]
    assert not missing, f"not on the live page: {missing}"


def test_the_operations_page_lists_every_metric(site):
    from mlrisk.live.metrics import METRICS

    page = (site / "operations.html").read_text()
    missing = [m[0] for m in METRICS if f"<code>{m[0]}</code>" not in page]
    assert len(METRICS) > 15 and not missing, f"not on the operations page: {missing}"


def test_the_built_site_loads_no_external_script_style_or_font(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 14
    external = re.compile(r"""^(https?:)?//""", re.I)
    for page in pages:
        html = page.read_text()
        refs = re.findall(r"""<script[^>]*\ssrc=["']([^"']+)""", html, re.I)
        refs += re.findall(r"""<link[^>]*\shref=["']([^"']+)""", html, re.I)
        assert refs, page
        bad = [u for u in refs if external.match(u)]
        assert not bad, f"{page.name} loads {bad}"
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html
        assert 'class="mermaid"' not in html  # material would fetch mermaid.js from a CDN
    assert (site / "img" / "dashboard.png").stat().st_size < 500_000


def test_a_broken_anchor_fails_the_strict_build(tmp_path, caplog):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\n[gone](stages/fetch.md#no-such-section)\n")
    with pytest.raises(Abort):
        _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no-such-section" in warnings[0], warnings


class _Item(BaseModel):
    x: int = Field(1, ge=0, lt=10, description="an item's x")


class _Small(BaseModel):
    """A small section."""

    kind: Literal["a", "b"] = Field("a", description="which")
    name: str = Field("AB", min_length=1, pattern=r"^[A-Z]+$", description="a name")
    items: list[_Item] = Field(default_factory=lambda: [_Item()], description="items")
    bare: float = 0.5


def test_the_generator_renders_types_defaults_constraints_and_nested_lists():
    root = create_model("Root", sec=(_Small, Field(default_factory=_Small)))
    md = params_reference(root)
    assert "## sec\n\nA small section." in md
    rows = {r.path: r for r in field_rows(root)}
    assert list(rows) == ["sec.kind", "sec.name", "sec.items[]", "sec.items[].x", "sec.bare"]
    assert rows["sec.kind"].type == 'one of "a", "b"' and rows["sec.kind"].default == '"a"'
    assert rows["sec.name"].allowed == "at least 1 long, matches `^[A-Z]+$`"
    assert rows["sec.items[].x"].allowed == "≥ 0, < 10" and rows["sec.items[].x"].description == "an item's x"
    assert rows["sec.items[]"].default == '[{"x": 1}]'
    assert "| `sec.bare` | float | `0.5` | — | — |" in md


def test_missing_descriptions_are_found():
    root = create_model("Root", sec=(_Small, Field(default_factory=_Small)))
    assert missing_descriptions(root) == ["sec.bare"]
    assert missing_descriptions(_Item) == []


def test_the_generator_follows_a_new_field():
    params = params_model()
    section = params.model_fields["train"].annotation
    train2 = create_model("Train2", __base__=section,
                          new_knob=(int, Field(3, ge=1, description="a knob added in a test")))
    params2 = create_model("Params2", __base__=params, train=(train2, Field(default_factory=train2)))
    before, after = params_reference(params), params_reference(params2)
    assert "train.new_knob" not in before
    assert "| `train.new_knob` | int | `3` | ≥ 1 | a knob added in a test |" in after


def test_settings_reference_names_each_variable():
    md = settings_reference(live_settings_model())
    assert "| `MLRISK_MAX_DRAWDOWN` | float | `0.2` | > 0, ≤ 1, finite |" in md
    assert "`MLRISK_BINANCE_API_KEY`" in md and "`MLRISK_BINANCE_BINANCE" not in md


def test_every_live_setting_has_a_description():
    assert missing_descriptions(live_settings_model()) == []


def test_every_params_field_has_a_description():
    assert missing_descriptions(params_model()) == []


def test_the_original_tool_experiment_is_valid_params(tmp_path):
    page = (ROOT / "docs" / "stages" / "train.md").read_text()
    block = re.search(r"<!-- original-experiment:start -->\s*```bash\n(.*?)```", page, re.S).group(1)
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
