"""Backtest charts: the main strategy (price with entries and exits, equity vs buy-and-hold with a
log-scale toggle, underwater curve, rolling Sharpe, monthly returns) and the sweep comparison (every
equity curve, heatmaps when two parameters vary). Every line is decimated (min/max per bucket) and
every candle chart aggregated, so a chart's size is bounded at any data size. The numbers come from
:mod:`mlrisk.backtest.performance`; this module only draws them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlrisk.report.plotting import COLORS, MAX_LINE_POINTS, MAX_MARKERS, minmax_indices, scatter, top_k

REASON_COLORS = {"signal": "#546e7a", "hold": "#8d6e63", "take_profit": "#2e7d32", "stop_loss": "#c62828",
                 "liquidation": "#000000", "end": "#9e9e9e"}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def price_trades_figure(times: pd.Series, close: np.ndarray, trades: pd.DataFrame, max_points: int = MAX_LINE_POINTS,
                        max_markers: int = MAX_MARKERS) -> go.Figure:
    """The close (min/max decimated) with entries (triangles) and exits (crosses, by reason); beyond
    ``max_markers`` trades only those with the largest |P&L| are marked (WebGL when dense)."""
    t = pd.DatetimeIndex(times)
    idx = minmax_indices(close, max_points)
    fig = go.Figure(go.Scatter(x=t[idx], y=np.asarray(close)[idx], mode="lines", name="close",
                               line={"color": "#607d8b", "width": 1}))
    tr = trades.iloc[top_k(trades["pnl"].abs().to_numpy(), max_markers)] if len(trades) else trades
    for side, symbol, color in (("long", "triangle-up", COLORS["up"]), ("short", "triangle-down", COLORS["down"])):
        s = tr[tr["side"] == side]
        if len(s):
            fig.add_trace(scatter(2 * len(tr), x=s["entry_time"], y=s["entry_price"], mode="markers", name=f"{side} entry",
                                       marker={"symbol": symbol, "size": 9, "color": color},
                                       customdata=np.c_[s["margin"], s["entry_kind"]],
                                       hovertemplate="entry %{y:.2f}<br>margin %{customdata[0]:.2f} (%{customdata[1]})"))
    for reason, s in tr.groupby("exit_reason") if len(tr) else []:
        fig.add_trace(scatter(2 * len(tr), x=s["exit_time"], y=s["exit_price"], mode="markers", name=f"exit: {reason}",
                                   marker={"symbol": "x", "size": 7, "color": REASON_COLORS.get(str(reason), "#333")},
                                   customdata=s["pnl"], hovertemplate="exit %{y:.2f}<br>P&L %{customdata:.2f}"))
    title = "Price, entries and exits" + (f" ({len(tr)} of {len(trades)} trades: largest |P&L|)" if len(tr) < len(trades) else "")
    fig.update_layout(title=title, height=420, yaxis_title="price", hovermode="closest")
    return fig


def equity_figure(times: pd.Series, equity: np.ndarray, buy_hold: np.ndarray, drawdown: np.ndarray,
                  max_points: int = MAX_LINE_POINTS) -> go.Figure:
    """Equity vs buy-and-hold (buttons switch the equity axis between linear and log scale) and the
    underwater curve (drawdown from the running peak, %) below, sharing the time axis."""
    t = pd.DatetimeIndex(times)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.05)
    for y, name, line in ((equity, "strategy equity", {"color": COLORS["equity"], "width": 1.5}),
                          (buy_hold, "buy-and-hold", {"color": COLORS["hold"], "dash": "dot", "width": 1.2})):
        i = minmax_indices(y, max_points)
        fig.add_trace(go.Scatter(x=t[i], y=np.asarray(y)[i], mode="lines", name=name, line=line), row=1, col=1)
    i = minmax_indices(drawdown, max_points)
    fig.add_trace(go.Scatter(x=t[i], y=100 * np.asarray(drawdown)[i], fill="tozeroy", mode="lines", name="drawdown %",
                             line={"color": COLORS["down"], "width": 1}), row=2, col=1)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="underwater %", row=2, col=1)
    fig.update_layout(height=520, hovermode="x unified", title="Equity vs buy-and-hold; underwater curve",
                      updatemenus=[{"type": "buttons", "direction": "right", "x": 1.0, "xanchor": "right", "y": 1.12,
                                    "yanchor": "top", "showactive": True, "buttons": [
                                        {"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
                                        {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log"}]}]}])
    return fig


def rolling_sharpe_figure(times: pd.Series, sharpe: np.ndarray, window_label: str, max_points: int = MAX_LINE_POINTS) -> go.Figure:
    t = pd.DatetimeIndex(times)
    s = np.asarray(sharpe, dtype="float64")
    i = minmax_indices(s, max_points)
    fig = go.Figure(go.Scatter(x=t[i], y=s[i], mode="lines", name="rolling Sharpe", line={"color": COLORS["equity"], "width": 1}))
    fig.add_hline(y=0, line_color="#999")
    fig.update_layout(title=f"Rolling Sharpe ({window_label} window, annualised)", height=300, yaxis_title="Sharpe",
                      showlegend=False)
    return fig


def monthly_returns_figure(table: pd.DataFrame) -> go.Figure:
    """Heatmap of monthly returns (rows years, columns months; fractions shown in %); months without
    data in any year are left out."""
    table = table.loc[:, table.notna().any()]
    z = 100 * table.to_numpy(dtype="float64")
    text = np.where(np.isnan(z), "", np.char.mod("%+.1f", np.nan_to_num(z)))
    fig = go.Figure(go.Heatmap(z=z, x=[MONTHS[m - 1] for m in table.columns], y=[str(y) for y in table.index], colorscale="RdYlGn", zmid=0,
                               text=text, texttemplate="%{text}", hovertemplate="%{y} %{x}: %{z:.2f} %<extra></extra>",
                               colorbar={"title": "%"}))
    fig.update_layout(title="Monthly returns (%)", height=max(220, 100 + 40 * len(table)),
                      yaxis={"autorange": "reversed", "type": "category"}, xaxis={"type": "category"})
    return fig


def equity_curves_figure(times: pd.Series, equities: pd.DataFrame, main: str | None = None) -> go.Figure:
    """Every combination's equity on one chart (WebGL when dense), the main parameters' curve drawn thick.
    ``equities``: one column per combination (already decimated by the backtest stage)."""
    fig = go.Figure()
    order = equities.iloc[-1].sort_values().index if len(equities) else equities.columns
    for label in order:
        is_main = label == main
        fig.add_trace(scatter(equities.size, x=pd.DatetimeIndex(times), y=equities[label], mode="lines", name=str(label),
                                   opacity=1.0 if is_main else 0.55, line={"width": 3 if is_main else 1}))
    fig.update_layout(title=f"Equity of all {equities.shape[1]} combinations (in-sample: ranked on the period shown)", height=460, yaxis_title="equity",
                      showlegend=equities.shape[1] <= 8, hovermode="closest")
    return fig


def heatmap_figure(table: pd.DataFrame, x: str, y: str, metric: str = "total_return") -> go.Figure:
    piv = table.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    fig = go.Figure(go.Heatmap(z=piv.to_numpy(), x=[str(v) for v in piv.columns], y=[str(v) for v in piv.index],
                               colorscale="RdYlGn", zmid=0, texttemplate="%{z:.3f}", colorbar={"title": metric}))
    fig.update_layout(title=f"{metric} by {x} and {y} (in-sample)", xaxis_title=x, yaxis_title=y, height=380,
                      xaxis={"type": "category"}, yaxis={"type": "category"})
    return fig


def costs_figure(split: dict[str, float], times: pd.Series, funding_paid: np.ndarray, per_candle: bool,
                 max_points: int = MAX_LINE_POINTS) -> go.Figure:
    """Where the P&L came from (quote currency): a waterfall of the price P&L, minus fees, minus
    funding paid, to the net (``split``: :func:`mlrisk.backtest.costs.pnl_split`), beside the funding paid
    over time (cumulative, positive: paid), at each settlement (``per_candle``) or realised at each
    trade's exit (``times`` then the exit times)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.38, 0.62], horizontal_spacing=0.1,
                        subplot_titles=("P&L: price, fees, funding (quote)",
                                        "Funding paid, cumulative (" + ("at each settlement" if per_candle
                                                                        else "realised at each trade's exit") + ")"))
    fig.add_trace(go.Waterfall(x=["price", "fees", "funding", "net"], measure=["relative", "relative", "relative", "total"],
                               y=[split["price"], -split["fees"], -split["funding"], split["net"]],
                               texttemplate="%{y:+,.2f}", textposition="outside", showlegend=False,
                               increasing={"marker": {"color": COLORS["up"]}}, decreasing={"marker": {"color": COLORS["down"]}},
                               totals={"marker": {"color": COLORS["equity"]}}), row=1, col=1)
    y = np.asarray(funding_paid, dtype="float64")
    i = minmax_indices(y, max_points) if len(y) else np.arange(0)
    fig.add_trace(go.Scatter(x=pd.DatetimeIndex(times)[i], y=y[i], mode="lines", name="funding paid",
                             line={"color": COLORS["down"], "width": 1.5, "shape": "hv"}, showlegend=False), row=1, col=2)
    fig.add_hline(y=0, line_color="#999", row=1, col=2)
    fig.update_yaxes(title_text="quote", row=1, col=1)
    fig.update_yaxes(title_text="paid (negative: received)", row=1, col=2)
    fig.update_layout(height=380, hovermode="closest")
    return fig
