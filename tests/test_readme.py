"""The README's two commands are the ones CI runs (the experiment it used to document is checked on the
docs' train page, tests/test_docs.py)."""

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    test_cmd = "bash scripts/setup.sh && .venv/bin/python -m pytest -q"
    assert test_cmd in README
    assert test_cmd in (ROOT / ".ci/run").read_text()
    assert "bash scripts/setup.sh && . .venv/bin/activate && dvc repro" in README


def test_the_readme_and_getting_started_show_the_same_commands():
    page = (ROOT / "docs" / "getting-started.md").read_text()
    for cmd in ("bash scripts/setup.sh && . .venv/bin/activate && dvc repro",
                "bash scripts/setup.sh && .venv/bin/python -m pytest -q"):
        assert cmd in README and cmd in page
