"""Evaluation charts: accuracy by confidence (``dist_acc_graph``) and predictions over the price
chart (``predictions_graph``). Functions return plotly figures; the stage writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlrisk.evaluation.confidence import confidence
from mlrisk.report.plotting import COLORS, verdict_banner


def confidence_figure(p: np.ndarray, conf: pd.DataFrame, cov: pd.DataFrame, calib: pd.DataFrame,
                      baseline_accuracy: float, verdict: str, good: bool) -> go.Figure:
    """Histogram of |p - 0.5|, accuracy per confidence bin (95 % CI, counts), coverage and accuracy
    above each threshold, and the reliability curve."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "Distribution of confidence |p - 0.5|", "Accuracy per confidence bin (95 % CI)",
        "Accuracy and coverage above threshold", "Calibration (reliability)"),
        specs=[[{}, {}], [{"secondary_y": True}, {}]], vertical_spacing=0.14)
    fig.add_trace(go.Histogram(x=confidence(p), xbins={"start": 0, "end": 0.5, "size": 0.5 / max(len(conf), 1)},
                               name="predictions", marker_color=COLORS["model"]), row=1, col=1)
    ok = conf["count"] > 0
    c = conf[ok]
    fig.add_trace(go.Scatter(x=c["bin_mid"], y=c["accuracy"], mode="markers+lines", name="accuracy per bin",
                             error_y={"type": "data", "symmetric": False, "array": c["ci_high"] - c["accuracy"],
                                      "arrayminus": c["accuracy"] - c["ci_low"]},
                             text=[f"n={n}" for n in c["count"]], hovertemplate="conf %{x:.3f}: acc %{y:.3f} (%{text})",
                             marker_color=COLORS["model"]), row=1, col=2)
    fig.add_hline(y=baseline_accuracy, line_dash="dot", line_color=COLORS["baseline"], row=1, col=2,
                  annotation_text="best baseline", annotation_position="bottom right")
    cv = cov[cov["count"] > 0]
    fig.add_trace(go.Scatter(x=cv["threshold"], y=cv["accuracy"], name="accuracy above threshold", mode="lines",
                             marker_color=COLORS["model"]), row=2, col=1)
    fig.add_trace(go.Scatter(x=cv["threshold"], y=cv["ci_low"], name="95 % CI low", mode="lines",
                             line={"dash": "dot", "width": 1}, marker_color=COLORS["model"], showlegend=False), row=2, col=1)
    fig.add_trace(go.Scatter(x=cv["threshold"], y=cv["ci_high"], name="95 % CI high", mode="lines",
                             line={"dash": "dot", "width": 1}, marker_color=COLORS["model"], showlegend=False), row=2, col=1)
    fig.add_trace(go.Scatter(x=cov["threshold"], y=cov["coverage"], name="coverage (share of rows)", mode="lines",
                             marker_color=COLORS["baseline"]), row=2, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#999"}, name="perfect calibration"), row=2, col=2)
    fig.add_trace(go.Scatter(x=calib["mean_predicted"], y=calib["fraction_up"], mode="markers+lines", name="model",
                             marker_color=COLORS["model"]), row=2, col=2)
    fig.update_xaxes(title_text="confidence", row=1, col=1)
    fig.update_xaxes(title_text="confidence", row=1, col=2)
    fig.update_xaxes(title_text="threshold on |p - 0.5|", row=2, col=1)
    fig.update_xaxes(title_text="mean predicted P(up)", row=2, col=2)
    fig.update_yaxes(title_text="rows", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=2)
    fig.update_yaxes(title_text="accuracy", row=2, col=1)
    fig.update_yaxes(title_text="coverage", row=2, col=1, secondary_y=True, range=[0, 1])
    fig.update_yaxes(title_text="observed share of up", row=2, col=2)
    fig.update_layout(title={"text": "Accuracy by prediction confidence (test part)", "y": 0.985}, height=880, margin={"t": 150})
    verdict_banner(fig, verdict, good)
    return fig


def predictions_figure(pred: pd.DataFrame, symbol: str, max_markers: int = 20_000) -> go.Figure:
    """Candlesticks of the test period with each prediction marked (triangle up/down, size by
    confidence, colour by right/wrong/unlabelled), a range slider, and P(up) below.

    Markers and the probability line are WebGL traces; above ``max_markers`` predictions only the
    most confident are marked (the probability line keeps every row).
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.03)
    t = pred["open_time"]
    fig.add_trace(go.Candlestick(x=t, open=pred["open"], high=pred["high"], low=pred["low"], close=pred["close"],
                                 name=symbol, increasing_line_color=COLORS["up"], decreasing_line_color=COLORS["down"]), row=1, col=1)
    has = pred["p_up"].notna()
    pr = pred[has]
    if len(pr) > max_markers:
        keep = confidence(pr["p_up"].to_numpy()).argsort()[-max_markers:]
        pr = pr.iloc[np.sort(keep)]
    conf = confidence(pr["p_up"].to_numpy())
    up = pr["p_up"].to_numpy() >= 0.5
    lab = pr["label"].to_numpy()
    right = (lab == up.astype(float))
    status = np.where(np.isnan(lab), "none", np.where(right, "right", "wrong"))
    size = 4 + 28 * conf
    for is_up, symbol, ycol, off in ((True, "triangle-up", "low", 0.998), (False, "triangle-down", "high", 1.002)):
        for st in ("right", "wrong", "none"):
            sel = (up == is_up) & (status == st)
            if not sel.any():
                continue
            fig.add_trace(go.Scattergl(
                x=pr["open_time"][sel], y=pr[ycol][sel] * off, mode="markers", name=f"{'up' if is_up else 'down'}: {st}",
                marker={"symbol": symbol, "size": size[sel], "color": COLORS[st], "line": {"width": 0}},
                customdata=pr["p_up"][sel], hovertemplate="P(up)=%{customdata:.3f}"), row=1, col=1)
    fig.add_trace(go.Scattergl(x=t, y=pred["p_up"], mode="lines", name="P(up)", line={"color": COLORS["model"], "width": 1}), row=2, col=1)
    fig.add_hline(y=0.5, line_color="#999", row=2, col=1)
    fig.update_layout(title="Predictions over the price chart (test part)", height=800, hovermode="x",
                      xaxis_rangeslider_visible=False, xaxis2={"rangeslider": {"visible": True, "thickness": 0.06}})
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="P(up)", range=[0, 1], row=2, col=1)
    return fig
