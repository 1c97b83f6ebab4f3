"""Each feature's scaled distribution, training vs test part, so a dead feature (one whose test values
all lie within a sliver of zero after the train-fitted scaling) or an exploding one is visible.

The histograms are binned here (shared edges per feature, densities), so the page's size does not
grow with the number of rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlrisk.report.plotting import COLORS

DEAD_STD = 0.1      # test std below this (in train-std units): the feature barely moves on test
WILD_STD = 10.0     # above this: the train-fitted scale is far too small for test
BINS = 40
COLS = 4            # small multiples per row


def feature_summary(train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Per feature: mean and std of the scaled values on each part, the test part's 1 % and 99 %
    quantiles, and ``flag`` ("dead" when the test std is below ``DEAD_STD``, "wild" above
    ``WILD_STD``, else empty). Stds are in units of the train-fitted scale."""
    rows = []
    for f in features:
        a, b = _finite(train[f]), _finite(test[f])
        sd = float(b.std()) if len(b) else float("nan")
        flag = "dead" if sd < DEAD_STD else "wild" if sd > WILD_STD else ""
        rows.append({"feature": f, "train_mean": _stat(a, np.mean), "train_std": _stat(a, np.std),
                     "test_mean": _stat(b, np.mean), "test_std": sd,
                     "test_q01": _stat(b, lambda v: np.quantile(v, 0.01)), "test_q99": _stat(b, lambda v: np.quantile(v, 0.99)),
                     "flag": flag})
    return pd.DataFrame(rows)


def _finite(s: pd.Series) -> np.ndarray:
    v = s.to_numpy(dtype="float64")
    return v[np.isfinite(v)]


def _stat(v: np.ndarray, fn) -> float:
    return float(fn(v)) if len(v) else float("nan")


def histogram(train: np.ndarray, test: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared bin edges over the 0.5 %..99.5 % range of both parts together (extremes pile into the
    outer bins) and each part's density on them: (edges, train density, test density)."""
    both = np.concatenate([train, test])
    if not len(both):
        return np.array([0.0, 1.0]), np.zeros(1), np.zeros(1)
    lo, hi = np.quantile(both, [0.005, 0.995])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    dens = [np.histogram(np.clip(v, lo, hi), edges, density=True)[0] if len(v) else np.zeros(bins) for v in (train, test)]
    return edges, dens[0], dens[1]


def feature_figure(train: pd.DataFrame, test: pd.DataFrame, features: list[str], summary: pd.DataFrame) -> go.Figure:
    """One small histogram per feature, train and test overlaid; a flagged feature's title says so."""
    cols = min(COLS, max(len(features), 1))
    rows = max(1, math.ceil(len(features) / cols))
    flags = dict(zip(summary["feature"], summary["flag"]))
    titles = [f"{f} — {flags[f].upper()}: test std {s:.3g}" if flags[f] else f
              for f, s in zip(summary["feature"], summary["test_std"])]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06, vertical_spacing=0.5 / rows)
    for i, f in enumerate(features):
        edges, d_train, d_test = histogram(_finite(train[f]), _finite(test[f]))
        mid, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        for part, d in (("train", d_train), ("test", d_test)):
            fig.add_trace(go.Bar(x=mid, y=d, width=width, name=part, legendgroup=part, showlegend=i == 0, opacity=0.55,
                                 marker_color=COLORS["train"] if part == "train" else COLORS["baseline"],
                                 hovertemplate=f"{part} %{{x:.3g}}: density %{{y:.3g}}<extra>{f}</extra>"),
                          row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(barmode="overlay", height=110 + 230 * rows, bargap=0,
                      legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0 + 60 / (110 + 230 * rows),
                              "yanchor": "bottom"})
    return fig
