"""The ``mlrisk`` command: what users do often, one subcommand each (``mlrisk <cmd> --help``).

- ``mlrisk repro``: ``dvc repro`` (extra arguments pass through), then the headline numbers and the
  dashboard's path;
- ``mlrisk report [--open]``: bring the dashboard up to date (``dvc repro report``), print its path,
  optionally open it in the browser;
- ``mlrisk diff [BASE]``: markdown of params, metrics and plots against a git revision (default main);
- ``mlrisk check-params``: validate params.yaml and print the effective values;
- ``mlrisk leaderboard``: experiments ranked by their out-of-sample margin over the best baseline,
  corrected for how many were tried;
- ``mlrisk holdout [EXP]``: spend the final holdout once on an experiment (every use is logged);
- ``mlrisk live``: the trading bot (see ``mlrisk live --help``);
- ``mlrisk --version``: the package version and the git revision of the current work tree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mlrisk.config.params import load_params
from mlrisk.errors import MlriskError
from mlrisk.exit_codes import ExitCode
from mlrisk.version import VersionAction

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
        return ExitCode.USER_ERROR
    ev, bt = (json.loads(p.read_text()) for p in METRICS.values())
    for line in headline_lines(ev, bt):
        print(line)
    print(f"dashboard: {DASHBOARD.resolve().as_uri()}")
    return ExitCode.OK


def cmd_check_params(args: argparse.Namespace) -> int:
    try:
        params = load_params(args.params)
    except MlriskError as e:
        print(f"error: {e}", file=sys.stderr)
        return ExitCode.USER_ERROR
    import yaml

    print(yaml.safe_dump(params.model_dump(), sort_keys=False))
    return ExitCode.OK


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
        return ExitCode.USER_ERROR
    if args.out:
        from mlrisk.io import write_text

        write_text(args.out, md)
        print(f"diff: written to {args.out}", file=sys.stderr)
    else:
        print(md, end="")
    return ExitCode.OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from mlrisk.report.leaderboard import gather, leaderboard, render

    try:
        table, m = leaderboard(gather(".", args.all_commits))
    except MlriskError as e:
        print(f"error: leaderboard: {e}", file=sys.stderr)
        return ExitCode.USER_ERROR
    print(render(table, m), end="")
    return ExitCode.OK


def _experiment_params(name: str):
    """params.yaml of experiment (or git revision) ``name``, validated."""
    import yaml

    from mlrisk.config.params import parse_params
    from mlrisk.report.leaderboard import list_experiments

    try:
        rows = list_experiments(".", all_commits=True)
    except MlriskError:  # no DVC experiments to look in: NAME may still be a git revision
        rows = []
    rev = next((r["rev"] for r in rows if r["name"] == name or r["rev"].startswith(name)), name)
    raw = subprocess.run(["git", "show", f"{rev}:params.yaml"], capture_output=True, text=True)
    if raw.returncode != 0:
        raise MlriskError(f"no experiment or revision {name!r}: `mlrisk leaderboard` or `dvc exp show` lists them")
    return parse_params(yaml.safe_load(raw.stdout), f"{name}:params.yaml")


def cmd_holdout(args: argparse.Namespace) -> int:
    try:
        workspace = load_params(args.params)
        params = _experiment_params(args.experiment) if args.experiment else workspace
        here, d = workspace.data, params.data
        if (d.source, d.symbol, d.interval, d.market, d.start, d.end) != (here.source, here.symbol, here.interval, here.market, here.start, here.end):
            raise MlriskError(f"experiment {args.experiment!r} reads other candles than the workspace: "
                              f"`dvc exp apply {args.experiment} && dvc repro fetch` first")
        from mlrisk.data.point_in_time import model_candles

        candles = model_candles(args.raw_dir, d, params.features)  # features.candles, inputs joined point-in-time
        from mlrisk.evaluation.holdout import spend_holdout
        from mlrisk.model.tfquiet import import_tensorflow

        import_tensorflow()
        from mlrisk.data.preprocess import load_others

        r = spend_holdout(candles, params, args.experiment or "workspace", args.log,
                          others=load_others(args.raw_dir, d.interval, d.others))
    except MlriskError as e:
        print(f"error: holdout: {e}", file=sys.stderr)
        return ExitCode.USER_ERROR
    if r["previous_uses"]:
        print(f"WARNING: this holdout ({r['first'][:10]}..{r['last'][:10]}) had been looked at {r['previous_uses']} time(s) "
              f"before (see {args.log}): it is no longer an untouched out-of-sample estimate", file=sys.stderr)
    print(f"holdout {r['first'][:10]}..{r['last'][:10]} ({r['candles']} candles), experiment {r['experiment']}:\n"
          f"  {r['verdict']}\n"
          f"  strategy {r['total_return']:+.2%} vs buy-and-hold {r['buy_hold_return']:+.2%}, Sharpe {r['sharpe']:.2f}, "
          f"max drawdown {r['max_drawdown']:.2%}, {r['trades']} trades\n"
          f"  logged in {args.log} (commit it: the log is how the project knows the holdout was spent)")
    return ExitCode.OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlrisk", description="mlrisk: run the pipeline, read its report, compare revisions.")
    p.add_argument("--version", action=VersionAction)
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
    s = sub.add_parser("leaderboard", help="experiments ranked by out-of-sample margin over the best baseline",
                       description="Rank every commit and experiment DVC knows (`dvc exp show`) by its margin over the best "
                                   "baseline (walk-forward pooled, or the test part), with the number tried, Bonferroni-"
                                   "adjusted p-values and the deflated Sharpe ratio across experiments.")
    s.add_argument("--all-commits", action="store_true", help="every commit's experiments too (dvc exp show -A)")
    s.set_defaults(func=cmd_leaderboard)
    s = sub.add_parser("holdout", help="spend the final holdout (evaluate.holdout candles) once on an experiment",
                       description="Train around the last evaluate.holdout candles, score them against the baselines and "
                                   "backtest the strategy there. Every use is appended to the log; a second look at the "
                                   "same holdout is reported as such.")
    s.add_argument("experiment", nargs="?", help="experiment name or git revision (default: the workspace's params)")
    s.add_argument("--params", default="params.yaml", type=Path)
    s.add_argument("--raw-dir", default="data/raw")
    s.add_argument("--log", default="holdout.json", type=Path, help="the holdout log (default: holdout.json, committed)")
    s.set_defaults(func=cmd_holdout)
    sub.add_parser("live", help="the trading bot (paper by default); `mlrisk live --help` lists its settings", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["live"]:  # the bot parses its own options (argparse cannot pass `--help` through)
        from mlrisk.live.cli import main as live_main

        return live_main(argv[1:])
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
