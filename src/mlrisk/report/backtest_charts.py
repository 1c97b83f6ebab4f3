"""Backtest charts: one strategy (the original ``chart.py``) and the sweep comparison
(``chart_all.py``): every equity curve on one chart, a heatmap when two parameters vary, and a
sortable table of every combination's metrics. All HTML embeds plotly.js (opens offline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlrisk.backtest.performance import drawdown_curve
from mlrisk.io import write_text
from mlrisk.report.plotting import COLORS

if TYPE_CHECKING:
    from mlrisk.backtest.runner import SweepResult

REASON_COLORS = {"signal": "#546e7a", "hold": "#8d6e63", "take_profit": "#2e7d32", "stop_loss": "#c62828",
                 "liquidation": "#000000", "end": "#9e9e9e"}


def strategy_figure(pred: pd.DataFrame, equity: np.ndarray, trades: pd.DataFrame, initial: float, title: str) -> go.Figure:
    """Price with entries and exits marked, equity vs buy-and-hold, and drawdown underneath."""
    t = pred["open_time"]
    close = pred["close"].to_numpy(dtype="float64")
    hold = initial * close / close[0]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.45, 0.35, 0.2], vertical_spacing=0.03,
                        subplot_titles=("Price, entries and exits", "Equity vs buy-and-hold", "Drawdown"))
    fig.add_trace(go.Scattergl(x=t, y=close, mode="lines", name="close", line={"color": "#607d8b", "width": 1}), row=1, col=1)
    if len(trades):
        for side, symbol, color in (("long", "triangle-up", COLORS["up"]), ("short", "triangle-down", COLORS["down"])):
            tr = trades[trades["side"] == side]
            if len(tr):
                fig.add_trace(go.Scattergl(x=tr["entry_time"], y=tr["entry_price"], mode="markers", name=f"{side} entry",
                                           marker={"symbol": symbol, "size": 9, "color": color},
                                           customdata=np.c_[tr["margin"], tr["entry_kind"]],
                                           hovertemplate="entry %{y:.2f}<br>margin %{customdata[0]:.2f} (%{customdata[1]})"),
                              row=1, col=1)
        for reason, tr in trades.groupby("exit_reason"):
            fig.add_trace(go.Scattergl(x=tr["exit_time"], y=tr["exit_price"], mode="markers", name=f"exit: {reason}",
                                       marker={"symbol": "x", "size": 7, "color": REASON_COLORS.get(str(reason), "#333")},
                                       customdata=tr["pnl"], hovertemplate="exit %{y:.2f}<br>P&L %{customdata:.2f}"),
                          row=1, col=1)
    fig.add_trace(go.Scattergl(x=t, y=equity, mode="lines", name="strategy equity", line={"color": COLORS["equity"]}), row=2, col=1)
    fig.add_trace(go.Scattergl(x=t, y=hold, mode="lines", name="buy-and-hold", line={"color": COLORS["hold"], "dash": "dot"}), row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=100 * drawdown_curve(equity), fill="tozeroy", mode="lines", name="drawdown %",
                             line={"color": COLORS["down"], "width": 1}), row=3, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="equity", row=2, col=1)
    fig.update_yaxes(title_text="drawdown %", row=3, col=1)
    fig.update_layout(title=title, height=900, hovermode="x unified")
    return fig


def _decimate(y: np.ndarray, max_points: int) -> np.ndarray:
    if len(y) <= max_points:
        return np.arange(len(y))
    idx = np.linspace(0, len(y) - 1, max_points).round().astype(int)
    return np.unique(idx)


def equity_curves_figure(times: pd.Series, equities: np.ndarray, labels: list[str], main: int | None = None,
                         max_points: int = 600) -> go.Figure:
    """Every combination's equity on one chart (WebGL, each curve decimated to ``max_points``)."""
    idx = _decimate(equities[0], max_points) if len(equities) else np.arange(0)
    x = pd.DatetimeIndex(times)[idx]
    fig = go.Figure()
    final = equities[:, -1] if len(equities) else np.array([])
    order = np.argsort(final)
    for i in order:
        is_main = i == main
        fig.add_trace(go.Scattergl(x=x, y=equities[i, idx], mode="lines", name=labels[i], opacity=1.0 if is_main else 0.55,
                                   line={"width": 3 if is_main else 1}))
    fig.update_layout(title=f"Equity of all {len(equities)} combinations", height=600, yaxis_title="equity",
                      showlegend=len(equities) <= 40)
    return fig


def heatmap_figure(table: pd.DataFrame, x: str, y: str, metric: str = "total_return") -> go.Figure:
    piv = table.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    fig = go.Figure(go.Heatmap(z=piv.to_numpy(), x=[str(v) for v in piv.columns], y=[str(v) for v in piv.index],
                               colorscale="RdYlGn", zmid=0, texttemplate="%{z:.3f}", colorbar={"title": metric}))
    fig.update_layout(title=f"{metric} by {x} and {y}", xaxis_title=x, yaxis_title=y, height=500)
    return fig


_SORT_JS = """
<script>
function sortTable(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),
b=t.tBodies[0],asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
[...b.rows].sort((r1,r2)=>{const a=r1.cells[i].dataset.v,c=r2.cells[i].dataset.v,x=parseFloat(a),y=parseFloat(c);
const k=(isNaN(x)||isNaN(y))?a.localeCompare(c):x-y;return asc?k:-k}).forEach(r=>b.appendChild(r));}
</script>
<style>table.sweep{border-collapse:collapse;font:12px sans-serif}table.sweep td,table.sweep th{border:1px solid #ccc;padding:3px 6px;text-align:right}
table.sweep th{cursor:pointer;background:#eee;position:sticky;top:0}</style>
"""


def sortable_table(table: pd.DataFrame) -> str:
    """An HTML table whose columns sort on click (self-contained, no external scripts)."""
    head = "".join(f'<th onclick="sortTable(this)">{html.escape(str(c))}</th>' for c in table.columns)
    rows = []
    for rec in table.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                shown = f"{v:.4g}"
            else:
                shown = str(v)
            cells.append(f'<td data-v="{html.escape(str(v))}">{html.escape(shown)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sweep"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def comparison_html(figures: list[go.Figure], table: pd.DataFrame, title: str) -> str:
    """One self-contained page: the figures (plotly.js embedded once) and the sortable table."""
    parts = []
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart-{i}",
                                 config={"displaylogo": False}))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_SORT_JS}</head>"
            f"<body><h2 style='font-family:sans-serif'>{html.escape(title)}</h2>{''.join(parts)}"
            f"<h3 style='font-family:sans-serif'>Every combination (click a header to sort)</h3>{sortable_table(table)}</body></html>")


def write_comparison(path: str | Path, figures: list[go.Figure], table: pd.DataFrame, title: str) -> None:
    write_text(path, comparison_html(figures, table, title))


def comparison_figures(times: pd.Series, sweep: "SweepResult") -> list[go.Figure]:
    """The comparison page's charts: every equity curve, plus total-return and Sharpe heatmaps when
    exactly two parameters vary."""
    figures = [equity_curves_figure(times, sweep.equities, [combo_label(g) for g in sweep.grid], sweep.main)]
    if len(sweep.varied) == 2:
        x, y = sweep.varied
        figures += [heatmap_figure(sweep.table, x, y, "total_return"), heatmap_figure(sweep.table, x, y, "sharpe")]
    return figures


def combo_label(combo: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in combo.items()) or "main"
