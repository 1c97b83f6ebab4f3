"""The ``mlrisk`` command: what users do often, one subcommand each (``mlrisk <cmd> --help``).

- ``mlrisk repro``: ``dvc repro`` (extra arguments pass through), then the headline numbers and the
  dashboard's path;
- ``mlrisk report [--open]``: bring the dashboard up to date (``dvc repro report``), print its path,
  optionally open it in the browser;
- ``mlrisk diff [BASE]``: markdown of params, metrics and plots against a git revision (default main);
- ``mlrisk check-params``: validate params.yaml and print the effective values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mlrisk.config import load_params
from mlrisk.errors import MlriskError
from mlrisk.stage import EXIT_USER_ERROR

DASHBOARD = Path("reports/index.html")
METRICS = {"evaluate": Path("reports/metrics/evaluate.json"), "backtest": Path("reports/metrics/backtest.json")}


def _dvc(*args: str) -> int:
    """Run DVC with this interpreter (works without activating the virtual environment); its own
    output and progress bars go straight to the terminal."""
    return subprocess.call([sys.executable, "-m", "dvc", *args])


def _summary() -> int:
    """Print the dashboard's path and the headline numbers from the stages' metric files."""
    from mlrisk.report.dashboard import headline_lines

    missing = [p for p in (DASHBOARD, *METRICS.values()) if not p.exists()]
    if missing:
        print(f"error: {missing[0]} not found: run `mlrisk repro` first", file=sys.stderr)
        return EXIT_USER_ERROR
    ev, bt = (json.loads(p.read_text()) for p in METRICS.values())
    for line in headline_lines(ev, bt):
        print(line)
    print(f"dashboard: {DASHBOARD.resolve().as_uri()}")
    return 0


def cmd_check_params(args: argparse.Namespace) -> int:
    try:
        params = load_params(args.params)
    except MlriskError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    import yaml

    print(yaml.safe_dump(params.model_dump(), sort_keys=False))
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    rc = _dvc("repro", *args.dvc_args)
    return rc or _summary()


def cmd_report(args: argparse.Namespace) -> int:
    rc = _dvc("repro", "report")
    if rc:
        return rc
    rc = _summary()
    if rc == 0 and args.open:
        import webbrowser

        webbrowser.open(DASHBOARD.resolve().as_uri())
    return rc


def cmd_diff(args: argparse.Namespace) -> int:
    from mlrisk.report.diff import diff_markdown

    try:
        md = diff_markdown(args.base, ".", args.plots_dir)
    except RuntimeError as e:
        print(f"error: diff: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.out:
        from mlrisk.io import write_text

        write_text(args.out, md)
        print(f"diff: written to {args.out}", file=sys.stderr)
    else:
        print(md, end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlrisk", description="mlrisk: run the pipeline, read its report, compare revisions.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    s = sub.add_parser("repro", help="run the pipeline (dvc repro), then print the headline numbers and the dashboard's path",
                       description="Run `dvc repro` (extra arguments are passed on, e.g. `mlrisk repro -f backtest`), "
                                   "then print the headline numbers and the dashboard's path.")
    s.add_argument("dvc_args", nargs=argparse.REMAINDER, help="arguments for dvc repro")
    s.set_defaults(func=cmd_repro)
    s = sub.add_parser("report", help="bring the dashboard up to date and print its path",
                       description="Run `dvc repro report` (re-runs only what changed) and print the dashboard's path "
                                   "and the headline numbers.")
    s.add_argument("--open", action="store_true", help="open reports/index.html in the default browser")
    s.set_defaults(func=cmd_report)
    s = sub.add_parser("diff", help="markdown: params, metrics and plots against a git revision",
                       description="Compare the workspace with git revision BASE: `dvc params diff`, `dvc metrics diff` "
                                   "(--md), changed plots rendered by `dvc plots diff`, and a one-line verdict.")
    s.add_argument("base", nargs="?", default="main", help="git revision to compare with (default: main)")
    s.add_argument("--out", type=Path, help="write the markdown here instead of stdout")
    s.add_argument("--plots-dir", default="reports/diff", help="where `dvc plots diff` renders changed plots")
    s.set_defaults(func=cmd_diff)
    s = sub.add_parser("check-params", help="validate params.yaml and print the effective parameters",
                       description="Validate params.yaml (unknown keys, types, ranges) and print the effective values.")
    s.add_argument("--params", default="params.yaml", type=Path)
    s.set_defaults(func=cmd_check_params)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
