"""Verdicts that agree with their intervals (issue 16): wherever the margin over the best baseline is
judged, the interval shown beside it is the 90 % interval whose lower bound decides the word.

The acceptance case: a difference series whose one-sided p is below 0.05 while the two-sided 95 %
interval crosses zero (a user once saw "beats every baseline, p = 0.0425" beside "95 % CI [-0.19,
+3.80] pp"). Every rendering must show the 90 % interval, above zero, beside "beats"/"significant";
and the reverse case (interval through zero) must never say "beats"."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from mlrisk.evaluation.scoring import score
from mlrisk.evaluation.significance import ALPHA, ci_label
from mlrisk.report.dashboard import _folds_note, build, headline_lines, read_inputs
from mlrisk.report.diff import model_verdicts
from mlrisk.report.evaluation_charts import folds_figure
from mlrisk.report.leaderboard import leaderboard, render
from mlrisk.report.plotting import COLORS
from report_inputs import write_report_inputs

BT = {"total_return": 0.1, "buy_hold_return": 0.05, "max_drawdown": -0.2, "buy_hold_max_drawdown": -0.3}
INTERVAL = re.compile(re.escape(ci_label()) + r" \[([+-]\d+\.\d+), ([+-]\d+\.\d+)\] pp")


def _case(seed: int, n: int = 600):
    """Paired rows whose accuracy difference is +1 (only the model right) with share 0.16, -1 with
    share 0.12, else 0: a small edge, near the edge of significance."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    u = rng.uniform(size=n)
    d = np.where(u < 0.16, 1, np.where(u < 0.28, -1, 0))
    right = lambda ok: np.where(ok == (y == 1), 0.6, 0.4)  # noqa: E731
    return score(y, right(d >= 0), {"persistence": right(d <= 0)}, reps=1000)


@pytest.fixture(scope="module")
def tight():
    """One-sided p in (0.025, 0.05): significant at ALPHA, yet more than 2.5 % of the bootstrap means
    are at or below zero, so the old two-sided 95 % interval would cross zero."""
    ev = _case(25)
    assert 0.025 < ev["p_value"] < ALPHA and ev["margin_ci_low"] > 0, ev["verdict"]  # the precondition
    return ev


@pytest.fixture(scope="module")
def loose():
    """A positive margin whose 90 % interval includes zero."""
    ev = _case(1)
    assert ev["margin_over_best_baseline"] > 0 and ev["p_value"] >= ALPHA and ev["margin_ci_low"] <= 0, ev["verdict"]
    return ev


def _shown(ev: dict) -> str:
    return f"{ci_label()} [{100 * ev['margin_ci_low']:+.2f}, {100 * ev['margin_ci_high']:+.2f}] pp"


def _agrees(text: str, ev: dict, significant: bool, others: bool = False) -> None:
    """``text`` shows ``ev``'s 90 % interval, no 95 % one (unless ``others``: a page that also shows
    other kinds of intervals), and every 90 % interval it shows is above zero exactly when the
    verdict is significant."""
    assert _shown(ev) in text, text
    assert others or "95 % CI" not in text
    for lo, _ in INTERVAL.findall(text):
        assert (float(lo) > 0) == significant, text


def test_the_verdict_is_decided_by_the_interval_it_shows(tight, loose):
    """The sentence the evaluate stage prints (``evaluate: <verdict>``) and mlrisk holdout prints."""
    assert tight["beats_best_baseline"] and "beats every baseline" in tight["verdict"]
    _agrees(tight["verdict"], tight, True)
    assert not loose["beats_best_baseline"] and "beat" not in loose["verdict"] and "not significantly" in loose["verdict"]
    _agrees(loose["verdict"], loose, False)


def test_headline_lines_say_significant_beside_the_same_interval(tight, loose):
    line = headline_lines(tight, BT)[0]
    _agrees(line, tight, True)
    assert ", significant (" in line
    line = headline_lines(loose, BT)[0]
    _agrees(line, loose, False)
    assert "not significant (" in line


def test_mlrisk_diff_shows_both_verdicts_with_their_intervals(tight, loose):
    md = model_verdicts("main", loose, tight)
    now, then = md.splitlines()
    assert now.startswith("- workspace: ") and then.startswith("- `main`: ")
    _agrees(now, tight, True)
    _agrees(then, loose, False)
    assert "beats every baseline" in now and "beat" not in then


def test_leaderboard_marks_significant_exactly_when_the_interval_is_above_zero(tight, loose):
    rows = [{"name": n, "rev": n * 7, "evaluate": ev, "backtest": {}} for n, ev in (("t", tight), ("l", loose))]
    old = {**loose, "margin_ci_level": None}  # a run from before the 90 % interval: no interval, no verdict
    table, m = leaderboard(rows + [{"name": "o", "rev": "o" * 7, "evaluate": old, "backtest": {}}])
    by = table.set_index("experiment")
    for name, ev in (("t", tight), ("l", loose)):
        assert by.loc[name, "margin_ci_pp"] == f"[{100 * ev['margin_ci_low']:+.2f}, {100 * ev['margin_ci_high']:+.2f}]"
    assert (by.loc["t", "significant"], by.loc["l", "significant"]) == ("yes", "no")
    assert (by.loc["o", "margin_ci_pp"], by.loc["o", "significant"]) == ("", "")
    text = render(table, m)
    assert ci_label() in text and f"p_value < {ALPHA}" in text and "95 % CI" not in text


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdicts")
    made = write_report_inputs(root, n_test=800, walk_forward=False, holdout_uses=0)
    return root, made


@pytest.mark.parametrize("which", ["tight", "loose"])
def test_the_dashboard_shows_the_verdict_beside_the_interval_that_decides_it(inputs, which, request):
    root, made = inputs
    ev = {**request.getfixturevalue(which), "mode": "split"}
    (root / "reports/metrics/evaluate.json").write_text(json.dumps(ev))
    page = build(read_inputs(root / "reports", root / "data/processed", root / "models/preprocess.json",
                             root / "holdout.json"), made["params"], {}, "")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    good = which == "tight"
    box = f'<div class="verdict {"good" if good else "bad"}">{html.escape(ev["verdict"])}</div>'
    assert page.count(box) == 2  # the summary and the evaluation section
    margin = f"{100 * ev['margin_over_best_baseline']:+.2f} pp, {'significant' if good else 'not significant'} ({_shown(ev)}"
    assert text.count(margin) == 2
    _agrees(text, ev, good, others=True)  # the accuracy-per-confidence-bin chart has Wilson 95 % intervals
    assert f"margin over persistence ({ci_label()}, one-sided p)" in text


def test_walk_forward_folds_count_and_colour_only_intervals_above_zero_as_significant(tight, loose):
    rows = [{"fold": k, "accuracy": ev["model"]["accuracy"], "persistence_accuracy": ev["baselines"]["persistence"]["accuracy"],
             "margin": ev["margin_over_best_baseline"], "margin_ci_low": ev["margin_ci_low"],
             "margin_ci_high": ev["margin_ci_high"], "p_value": ev["p_value"],
             "beats_best_baseline": ev["beats_best_baseline"]} for k, ev in ((1, tight), (2, loose))]
    wf = pd.DataFrame(rows)
    note = _folds_note(wf, {})
    assert "2 of 2 folds are above their best baseline, 1 significantly" in note and f"p < {ALPHA}" in note
    assert ci_label() in note
    colours = folds_figure(wf).data[-1].marker.color
    assert list(colours) == [COLORS["right"], COLORS["none"]]  # green only where the interval is above zero
    assert ci_label() in folds_figure(wf).layout.annotations[1].text
