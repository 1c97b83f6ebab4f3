"""Plotly helpers shared by every chart: colours, a figure as an HTML fragment (plotly.js is loaded
once by the page, see :mod:`mlrisk.report.html`), and the reductions that keep a chart's size bounded
at any data size (min/max decimation of lines, OHLC aggregation of candles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

COLORS = {"up": "#26a69a", "down": "#ef5350", "right": "#2e7d32", "wrong": "#c62828", "none": "#9e9e9e",
          "model": "#1f77b4", "baseline": "#ff7f0e", "equity": "#1f77b4", "hold": "#7f7f7f", "train": "#1f77b4",
          "val": "#ff7f0e"}

MAX_LINE_POINTS = 4000    # points per line trace after decimation
MAX_CANDLES = 1500        # candlesticks per chart after aggregation
MAX_MARKERS = 5000        # prediction / trade markers per chart


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` plus its ``Plotly.newPlot`` call, without plotly.js (the page loads
    it once). The div id is fixed, so the same figure always gives the same bytes."""
    fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40}, font={"size": 12})
    if fig.layout.legend.orientation is None:
        fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def minmax_indices(y: np.ndarray, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Sorted row indices that keep at most about ``max_points`` of ``y``: per bucket of consecutive
    rows its first, lowest, highest and last point, so peaks and troughs (a drawdown's bottom)
    survive the decimation. All indices when ``y`` is short enough."""
    y = np.asarray(y, dtype="float64")
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(max_points // 4, 1)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts, ends = edges[:-1], edges[1:] - 1
    filled = np.where(np.isnan(y), np.nanmean(y) if np.isfinite(y).any() else 0.0, y)
    idx = np.arange(n)
    bucket = np.repeat(np.arange(buckets), np.diff(edges))
    order_min = np.lexsort((filled, bucket))       # per bucket ascending by value
    first_of = np.r_[0, np.cumsum(np.diff(edges))[:-1]]
    last_of = np.cumsum(np.diff(edges)) - 1
    mins, maxs = idx[order_min][first_of], idx[order_min][last_of]
    return np.unique(np.concatenate([starts, ends, mins, maxs]))


def aggregation_factor(n: int, max_rows: int = MAX_CANDLES) -> int:
    """How many consecutive candles make one aggregated candle so that at most ``max_rows`` remain."""
    return max(1, int(np.ceil(n / max_rows)))


def aggregate_ohlc(df: pd.DataFrame, k: int, time_col: str = "open_time") -> pd.DataFrame:
    """Groups of ``k`` consecutive candles as one candle: first open and time, highest high, lowest
    low, last close (``k`` = 1 returns the frame's columns unchanged)."""
    cols = [time_col, "open", "high", "low", "close"]
    if k <= 1:
        return df[cols].reset_index(drop=True)
    g = np.arange(len(df)) // k
    return df[cols].groupby(g).agg({time_col: "first", "open": "first", "high": "max", "low": "min", "close": "last"}
                                   ).reset_index(drop=True)


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Sorted indices of the ``k`` largest scores (all indices when there are fewer)."""
    score = np.asarray(score, dtype="float64")
    if len(score) <= k:
        return np.arange(len(score))
    return np.sort(np.argpartition(-np.nan_to_num(score, nan=-np.inf), k)[:k])


GL_MIN_POINTS = 10_000    # from this many points in a chart WebGL; below, SVG draws faster (and needs no GL context)


def scatter(n_points: int, **kwargs) -> go.Scatter | go.Scattergl:
    """A WebGL scatter trace when the chart holds ``n_points`` or more points, an SVG one otherwise."""
    return go.Scattergl(**kwargs) if n_points >= GL_MIN_POINTS else go.Scatter(**kwargs)
