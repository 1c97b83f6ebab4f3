"""``mlrisk --version``: the installed package's version and, inside a git work tree, its revision."""

from __future__ import annotations

import argparse
import subprocess
from importlib import metadata
from typing import Any


def git_revision(cwd: str = ".") -> str | None:
    """The short commit hash of the git work tree at ``cwd``, with ``-dirty`` when tracked files have
    uncommitted changes; None outside a work tree or without git."""
    try:
        r = subprocess.run(["git", "describe", "--always", "--dirty", "--exclude=*"], cwd=cwd,
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def version_line(cwd: str = ".") -> str:
    """``mlrisk 0.1.0`` (the installed distribution's version), plus ``(git abc1234[-dirty])`` when
    ``cwd`` is inside a git work tree."""
    try:
        version = metadata.version("mlrisk")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from mlrisk import __version__ as version
    rev = git_revision(cwd)
    return f"mlrisk {version}" + (f" (git {rev})" if rev else "")


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_line` for the current directory and exit 0 (git runs only then)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version (and the git revision of the current directory's work tree) and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()
