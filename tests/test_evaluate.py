import math

import numpy as np
import pandas as pd
import pytest

from mlrisk.evaluation import baselines
from mlrisk.evaluation.confidence import calibration_table, confidence_table, coverage_table
from mlrisk.io import json_safe
from mlrisk.evaluation.scoring import predictions_table, score
from mlrisk.report.evaluation_charts import confidence_figure, predictions_figure
from mlrisk.evaluation.classification import accuracy_p_value, classification_metrics, wilson_interval


def test_metrics_on_a_hand_made_case():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.2, 0.6])
    m = classification_metrics(y, p)
    assert m["accuracy"] == 0.5 and m["balanced_accuracy"] == 0.5
    assert m["roc_auc"] == pytest.approx(0.75)  # pairs (pos, neg): 0.9>0.2, 0.9>0.6, 0.4>0.2, 0.4<0.6
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.04 + 0.36) / 4)
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.4)) / 4)


def test_baselines_on_a_hand_made_case():
    # train: 3 up of 4 -> majority up with P = 0.75
    np.testing.assert_allclose(baselines.majority(np.array([1, 1, 0, 1]), 3), [0.75] * 3)
    close = np.array([10.0, 11, 12, 11, 10, 11])
    ends = np.array([1, 2, 3, 4])   # last-candle directions: up, up, down, down
    y_tr = np.array([1, 0, 0, 0])   # after up: 1 of 2 up; after down: 0 of 2
    close_te = np.array([5.0, 6, 5])
    p = baselines.persistence(close, ends, y_tr, close_te, np.array([1, 2]))
    np.testing.assert_allclose(p, [0.5, 0.0])
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    p_lr = baselines.logistic(x, np.array([0, 0, 1, 1]), np.array([[-3.0], [3.0]]))
    assert p_lr[0] < 0.5 < p_lr[1]


def test_score_says_when_the_model_loses():
    y = np.array([1, 1, 1, 0] * 50)
    good = np.where(y == 1, 0.7, 0.3)
    bad = np.full(len(y), 0.4)
    maj = np.full(len(y), 0.75)
    s = score(y, bad, {"majority": maj})
    assert not s["beats_best_baseline"] and "does NOT beat" in s["verdict"] and s["margin_over_best_baseline"] == -0.5
    s = score(y, good, {"majority": maj})
    assert s["beats_best_baseline"] and s["margin_ci_low"] > 0 and s["p_value_vs_majority"] < 1e-10
    assert "beats every baseline" in s["verdict"] and "90 % CI [+" in s["verdict"]


def test_p_value_and_wilson():
    assert accuracy_p_value(50, 100, 0.5) > 0.4
    assert accuracy_p_value(70, 100, 0.5) < 1e-3
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)


def test_confidence_tables():
    y = np.array([1, 0, 1, 0, 1, 1])
    p = np.array([0.55, 0.45, 0.95, 0.9, 0.02, 0.65])  # conf .05 .05 .45 .4 .48 .15; right: T T T F F T
    t = confidence_table(y, p, bins=5)  # edges 0 .1 .2 .3 .4 .5
    assert t["count"].tolist() == [2, 1, 0, 0, 3]
    assert t["accuracy"].iloc[0] == 1.0 and t["accuracy"].iloc[4] == pytest.approx(1 / 3)
    assert t["ci_low"].iloc[0] < 1.0 and np.isnan(t["accuracy"].iloc[2])
    c = coverage_table(y, p, np.array([0.0, 0.1, 0.46]))
    assert c["coverage"].tolist() == pytest.approx([1.0, 4 / 6, 1 / 6])
    assert c["accuracy"].tolist() == pytest.approx([4 / 6, 2 / 4, 0.0])
    cal = calibration_table(np.array([0, 1] * 50), np.linspace(0.01, 0.99, 100), bins=4)
    assert len(cal) == 4 and cal["mean_predicted"].is_monotonic_increasing


def test_json_safe_turns_nan_into_null():
    assert json_safe({"a": float("nan"), "b": [np.float64(1.5), np.int64(2)], "c": np.bool_(True)}) == {"a": None, "b": [1.5, 2], "c": True}


def _pred(n=300):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                          "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                          "label": rng.integers(0, 2, n).astype(float)})
    frame.loc[5, "label"] = np.nan
    ends = np.arange(10, n)
    return predictions_table(frame, ends, rng.uniform(0.2, 0.8, len(ends)))


def test_predictions_table_marks_rows_without_a_window():
    pred = _pred()
    assert pred["p_up"].iloc[:10].isna().all() and pred["p_up"].iloc[10:].notna().all()


def test_charts_contain_the_expected_traces():
    pred = _pred()
    fig = predictions_figure(pred, "BTCUSDT", "1h")
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds[0] == "Candlestick" and "Scatter" in kinds
    names = {t.name for t in fig.data}
    assert {"up: right", "up: wrong", "down: right", "down: wrong", "P(up)"} <= names
    has = pred.dropna(subset=["p_up", "label"])
    y, p = has["label"].to_numpy().astype(int), has["p_up"].to_numpy()
    fig2 = confidence_figure(p, confidence_table(y, p), coverage_table(y, p), calibration_table(y, p), 0.5)
    names2 = [t.name for t in fig2.data]
    for expected in ("predictions", "accuracy per bin", "coverage (share of rows)", "accuracy above threshold", "perfect calibration"):
        assert expected in names2
    assert sum(fig2.data[0].y) == len(p)  # the histogram is binned before plotting and counts every prediction


def test_predictions_chart_is_bounded_on_a_year_of_candles():
    """A year of hourly candles: at most 1,500 (merged) candlesticks, the most confident 2,000 markers."""
    rng = np.random.default_rng(1)
    n = 8760
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, n)))
    frame = pd.DataFrame({"open_time": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), "open": close,
                          "high": close * 1.01, "low": close * 0.99, "close": close, "label": rng.integers(0, 2, n).astype(float)})
    p_all = rng.uniform(0, 1, n - 48)
    pred = predictions_table(frame, np.arange(48, n), p_all)
    fig = predictions_figure(pred, "BTCUSDT", "1h", max_markers=2000)
    markers = [t for t in fig.data if getattr(t, "mode", None) == "markers"]
    assert sum(len(t.x) for t in markers) == 2000
    assert min(abs(v - 0.5) for t in markers for v in t.customdata) >= np.sort(np.abs(p_all - 0.5))[-2000] - 1e-12
    candles = fig.data[0]
    assert len(candles.x) <= 1500 and candles.name == "BTCUSDT (6 × 1h)"
    assert max(candles.high) == pytest.approx(pred["high"].max()) and min(candles.low) == pytest.approx(pred["low"].min())
