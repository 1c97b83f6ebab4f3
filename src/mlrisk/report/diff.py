"""``mlrisk diff``: what a change did to the numbers, as markdown for a pull-request comment:
``dvc params diff``, ``dvc metrics diff`` (headline and detail), the changed plots rendered by
``dvc plots diff``, a one-line verdict on the headline numbers, and the evaluation's own verdict
(``evaluate.json``, with its 90 % interval and one-sided p-value) at both revisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HEADLINE = "reports/metrics/headline.json"
EVALUATE = "reports/metrics/evaluate.json"
DETAIL = [EVALUATE, "reports/metrics/backtest.json"]
PLOTS = ["reports/plots", "reports/train/plots"]
MARKER = "<!-- mlrisk-diff -->"   # lets CI find and update its one comment


def verdict(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """One line on the headline numbers (``reports/metrics/headline.json``), new minus old, e.g.
    "test accuracy -1.20 pp, margin over best baseline -1.20 pp, total return +3.10 pp, Sharpe +0.30,
    max drawdown -2.10 pp". Accuracy is a fraction in the file and shown in percentage points."""
    if not new:
        return "no headline metrics in the workspace: run `dvc repro` first"
    if not old:
        return "no headline metrics at the base revision to compare with"
    parts = []
    for key, label, scale, unit, fmt in (("accuracy", "test accuracy", 100, " pp", "+.2f"),
                                         ("margin_pp", "margin over best baseline", 1, " pp", "+.2f"),
                                         ("return_pct", "total return", 1, " pp", "+.2f"),
                                         ("sharpe", "Sharpe", 1, "", "+.2f"),
                                         ("max_dd_pct", "max drawdown", 1, " pp", "+.2f")):
        if key in old and key in new and old[key] is not None and new[key] is not None:
            parts.append(f"{label} {scale * (new[key] - old[key]):{fmt}}{unit}")
    return ", ".join(parts) if parts else "no comparable headline metrics"


def model_verdicts(base: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """Markdown lines with the evaluation's verdict in the workspace and at ``base``: each
    ``evaluate.json``'s own sentence, which shows the margin with the interval and p-value its
    words are decided by (:func:`mlrisk.evaluation.scoring.score`)."""
    return "\n".join(f"- {name}: {ev['verdict'] if ev and ev.get('verdict') else 'no evaluation verdict'}"
                      for name, ev in (("workspace", new), (f"`{base}`", old)))


def _run(*args: str, cwd: Path) -> str:
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(args[2:] if args[:2] == (sys.executable, '-m') else args)}` failed: "
                           f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or ['(no output)']}")
    return r.stdout


def _dvc(*args: str, cwd: Path) -> str:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def _json_at(rev: str | None, path: str, cwd: Path) -> dict[str, Any] | None:
    """A JSON file at a git revision (None: the workspace); None when it does not exist there."""
    try:
        text = _run("git", "show", f"{rev}:{path}", cwd=cwd) if rev else (cwd / path).read_text()
        return json.loads(text)
    except (RuntimeError, OSError, json.JSONDecodeError):
        return None


def _table(md: str) -> str:
    """A markdown table from DVC, or "" when it has no rows (only its header and rule)."""
    lines = [ln for ln in md.strip().splitlines() if ln.strip()]
    return "\n".join(lines) if len(lines) > 2 else ""


def changed_plots(base: str, cwd: Path) -> list[str]:
    """Plot data files (DVC plots, kept in git) that differ between ``base`` and the workspace."""
    out = _run("git", "diff", "--name-only", base, "--", *PLOTS, cwd=cwd)
    return [p for p in out.split() if (cwd / p).exists()]


def diff_markdown(base: str = "main", cwd: str | Path = ".", plots_dir: str | Path = "reports/diff") -> str:
    """The whole markdown report of the workspace against git revision ``base``; changed plots are
    rendered by ``dvc plots diff`` into ``plots_dir`` (relative to ``cwd``)."""
    from tqdm.auto import tqdm

    cwd = Path(cwd)
    _run("git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=cwd)
    with tqdm(total=5, desc=f"diff against {base}", unit="step", disable=None, leave=False, file=sys.stderr) as bar:
        line = verdict(_json_at(base, HEADLINE, cwd), _json_at(None, HEADLINE, cwd))
        model = model_verdicts(base, _json_at(base, EVALUATE, cwd), _json_at(None, EVALUATE, cwd))
        bar.update()
        params = _table(_dvc("params", "diff", base, "--md", cwd=cwd)) or "No parameter changed."
        bar.update()
        metrics = _table(_dvc("metrics", "diff", base, "--md", cwd=cwd)) or "No metric changed."
        bar.update()
        detail = _table(_dvc("metrics", "diff", base, "--md", "--targets", *DETAIL, cwd=cwd)) if any(
            (cwd / d).exists() for d in DETAIL) else ""
        bar.update()
        plots = changed_plots(base, cwd)
        if plots:
            _dvc("plots", "diff", base, "--targets", *plots, "-o", str(plots_dir), cwd=cwd)
            plots_md = (f"Changed: {', '.join(f'`{p}`' for p in plots)}. Rendered by `dvc plots diff` into "
                        f"`{Path(plots_dir).as_posix()}/` (open `index.html`; the CI run keeps it as an artifact).")
        else:
            plots_md = "No plot data changed."
        bar.update()
    parts = [MARKER, f"## mlrisk diff against `{base}`", f"**{line}**", "### Model vs baselines", model,
             "### Parameters", params,
             "### Metrics", metrics]
    if detail:
        parts += ["<details><summary>Every evaluation and backtest metric</summary>", "", detail, "", "</details>"]
    parts += ["### Plots", plots_md]
    return "\n\n".join(parts) + "\n"
