"""mlrisk leaderboard: parsing `dvc exp show --json`, ranking and the corrections for many trials."""

import numpy as np

from mlrisk.report.leaderboard import flatten_exp_show, leaderboard, render

SHOWN = [  # the shape of `dvc exp show --json` (DVC 3)
    {"rev": "workspace", "name": None, "data": {"rev": "workspace", "params": {"params.yaml": {"data": {"a": 3}}}}, "experiments": None},
    {"rev": "d613" + "0" * 36, "name": "main", "error": None,
     "data": {"rev": "d613" + "0" * 36, "params": {"params.yaml": {"data": {"a": 1}}}},
     "experiments": [{"revs": [{"rev": "8805" + "0" * 36, "name": "three", "error": None,
                                "data": {"params": {"params.yaml": {"data": {"a": 3}}}}}]},
                     {"revs": [{"rev": "bad0" + "0" * 36, "name": "broken", "error": {"msg": "x"}, "data": None}]}]},
]


def test_flatten_keeps_commits_and_experiments_not_the_workspace_or_errors():
    rows = flatten_exp_show(SHOWN)
    assert [(r["name"], r["params"]) for r in rows] == [("main", {"a": 1}), ("three", {"a": 3})]


def _exp(name, margin, p, sr, mode="split"):
    ev = {"mode": mode, "model": {"accuracy": 0.5 + margin}, "best_baseline": "gbt", "margin_over_best_baseline": margin,
          "margin_ci_low": margin - 0.01, "margin_ci_high": margin + 0.01, "p_value": p}
    if mode == "walk_forward":
        ev["walk_forward"] = {"folds": 5}
    bt = {"total_return": 0.1, "sharpe": 1.0, "sharpe_per_period": sr, "n_returns": 2000, "returns_skew": 0.0, "returns_kurtosis": 3.0}
    return {"name": name, "rev": name * 7, "evaluate": ev, "backtest": bt}


def test_ranked_by_margin_with_bonferroni_and_deflated_sharpe():
    rows = [_exp("a", -0.01, 0.8, 0.01), _exp("b", 0.02, 0.01, 0.05, mode="walk_forward"), _exp("c", 0.005, 0.2, 0.02)]
    table, m = leaderboard(rows)
    assert m == 3 and table["experiment"].tolist() == ["b", "c", "a"]
    assert np.allclose(table["p_adjusted"], [0.03, 0.6, 1.0])
    assert table.loc[0, "mode"] == "walk_forward" and np.isclose(table.loc[0, "margin_pp"], 2.0)
    # deflation: the same per-period Sharpe is worth less when more experiments were tried
    more, _ = leaderboard(rows + [_exp(x, 0.0, 0.5, 0.0) for x in "defghij"])
    b_few = table.set_index("experiment").loc["b", "dsr_across_experiments"]
    b_many = more.set_index("experiment").loc["b", "dsr_across_experiments"]
    assert 0 < b_many < b_few < 1
    text = render(table, m)
    assert text.startswith("3 experiment(s) tried") and "Bonferroni" in text
