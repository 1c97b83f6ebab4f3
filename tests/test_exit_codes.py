"""One exit-code table (:mod:`mlrisk.exit_codes`): every code is in the docstring's table, and the
commands return the enum, never a literal number."""

from __future__ import annotations

import re

import mlrisk.exit_codes as ec
from conftest import ROOT
from mlrisk.exit_codes import ExitCode

USERS = ["src/mlrisk/stage.py", "src/mlrisk/cli.py", "src/mlrisk/live/cli.py", "src/mlrisk/live/app.py"]


def test_the_docstring_table_lists_every_code_and_only_those():
    rows = re.findall(r"^\| (\d+) \| ``(\w+)`` \|", ec.__doc__, flags=re.M)
    assert rows and {(int(v), n) for v, n in rows} == {(c.value, c.name) for c in ExitCode}


def test_no_literal_exit_codes_in_the_commands():
    for rel in USERS:
        text = (ROOT / rel).read_text()
        assert "ExitCode" in text, rel
        bad = re.findall(r"(?:return|exit_code =|sys\.exit\() *\d+\b", text)
        assert bad == [], f"{rel}: {bad}"
