"""Evaluation charts: accuracy by confidence (the original ``dist_acc_graph``), predictions over the
price chart (``predictions_graph``) and training curves. Functions return plotly figures; the report
stage puts them on the dashboard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlrisk.evaluation.confidence import confidence
from mlrisk.evaluation.significance import ci_label
from mlrisk.report.plotting import COLORS, MAX_CANDLES, MAX_MARKERS, aggregate_ohlc, aggregation_factor, scatter, top_k


def confidence_figure(p: np.ndarray, conf: pd.DataFrame, cov: pd.DataFrame, calib: pd.DataFrame,
                      baseline_accuracy: float) -> go.Figure:
    """Histogram of |p - 0.5|, accuracy per confidence bin (95 % CI, counts), coverage and accuracy
    above each threshold, and the reliability curve."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "Distribution of confidence |p - 0.5|", "Accuracy per confidence bin (95 % CI)",
        "Accuracy and coverage above threshold", "Calibration (reliability)"),
        specs=[[{}, {}], [{"secondary_y": True}, {}]], vertical_spacing=0.16, horizontal_spacing=0.13)
    counts, edges = np.histogram(confidence(p[~np.isnan(p)]), bins=max(len(conf), 1), range=(0.0, 0.5))  # binned here:
    fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name="predictions",  # bounded size
                         marker_color=COLORS["model"], showlegend=False), row=1, col=1)
    c = conf[conf["count"] > 0]
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
    for col, label in (("ci_low", "95 % CI low"), ("ci_high", "95 % CI high")):
        fig.add_trace(go.Scatter(x=cv["threshold"], y=cv[col], name=label, mode="lines", line={"dash": "dot", "width": 1},
                                 marker_color=COLORS["model"], showlegend=False), row=2, col=1)
    fig.add_trace(go.Scatter(x=cov["threshold"], y=cov["coverage"], name="coverage (share of rows)", mode="lines",
                             marker_color=COLORS["baseline"]), row=2, col=1, secondary_y=True)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#999"}, name="perfect calibration"), row=2, col=2)
    fig.add_trace(go.Scatter(x=calib["mean_predicted"], y=calib["fraction_up"], mode="markers+lines", name="calibration",
                             marker_color=COLORS["model"], showlegend=False), row=2, col=2)
    for (r, cc), title in {(1, 1): "confidence", (1, 2): "confidence", (2, 1): "threshold on |p - 0.5|",
                           (2, 2): "mean predicted P(up)"}.items():
        fig.update_xaxes(title_text=title, row=r, col=cc)
    fig.update_yaxes(title_text="rows", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=2)
    fig.update_yaxes(title_text="accuracy", row=2, col=1)
    fig.update_yaxes(title_text="coverage", row=2, col=1, secondary_y=True, range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="observed share of up", row=2, col=2)
    fig.update_layout(height=660)
    return fig


def predictions_figure(pred: pd.DataFrame, symbol: str, interval: str, max_candles: int = MAX_CANDLES,
                       max_markers: int = MAX_MARKERS) -> go.Figure:
    """Candlesticks of the test period with predictions marked (triangle up/down, size by confidence,
    colour by right/wrong/unlabelled) and P(up) below.

    Bounded at any data size: beyond ``max_candles`` rows, consecutive candles are merged into coarser
    OHLC candles and P(up) is averaged per merged candle; beyond ``max_markers`` predictions only the
    most confident are marked (WebGL markers). Every row stays in ``reports/predictions.parquet``.
    """
    k = aggregation_factor(len(pred), max_candles)
    candles = aggregate_ohlc(pred, k)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.04)
    fig.add_trace(go.Candlestick(x=candles["open_time"], open=candles["open"], high=candles["high"], low=candles["low"],
                                 close=candles["close"], name=symbol if k == 1 else f"{symbol} ({k} × {interval})",
                                 increasing_line_color=COLORS["up"], decreasing_line_color=COLORS["down"]), row=1, col=1)
    pr = pred[pred["p_up"].notna()]
    pr = pr.iloc[top_k(confidence(pr["p_up"].to_numpy()), max_markers)]
    conf = confidence(pr["p_up"].to_numpy())
    up = pr["p_up"].to_numpy() >= 0.5
    lab = pr["label"].to_numpy(dtype="float64")
    status = np.where(np.isnan(lab), "none", np.where(lab == up.astype(float), "right", "wrong"))
    size = 4 + 24 * conf
    for is_up, marker, ycol, off in ((True, "triangle-up", "low", 0.998), (False, "triangle-down", "high", 1.002)):
        for st in ("right", "wrong", "none"):
            sel = (up == is_up) & (status == st)
            if sel.any():
                fig.add_trace(scatter(
                    len(pr), x=pr["open_time"][sel], y=pr[ycol][sel] * off, mode="markers", name=f"{'up' if is_up else 'down'}: {st}",
                    marker={"symbol": marker, "size": size[sel], "color": COLORS[st], "line": {"width": 0}},
                    customdata=pr["p_up"][sel], hovertemplate="P(up)=%{customdata:.3f}"), row=1, col=1)
    g = np.arange(len(pred)) // k
    p_line = pred.groupby(g).agg(t=("open_time", "first"), p=("p_up", "mean"))
    fig.add_trace(go.Scatter(x=p_line["t"], y=p_line["p"], mode="lines", name="P(up)" if k == 1 else f"P(up), mean of {k}",
                             line={"color": COLORS["model"], "width": 1}), row=2, col=1)
    fig.add_hline(y=0.5, line_color="#999", row=2, col=1)
    fig.update_layout(height=620, hovermode="x", xaxis_rangeslider_visible=False)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="P(up)", range=[0, 1], row=2, col=1)
    return fig


def training_figure(curves: pd.DataFrame, best_epoch: int | None) -> go.Figure:
    """Loss and accuracy per epoch, training vs validation, the best epoch (restored weights) marked.
    ``curves``: columns epoch, train_loss, val_loss, train_accuracy, val_accuracy (any may be missing)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for part, label in (("train", "training"), ("val", "validation")):
            name = f"{part}_{metric}"
            if name in curves:
                fig.add_trace(go.Scatter(x=curves["epoch"], y=curves[name], mode="lines+markers", name=label,
                                         legendgroup=part, showlegend=col == 1, line={"color": COLORS[part]}), row=1, col=col)
        if best_epoch is not None:
            fig.add_vline(x=best_epoch, line_dash="dash", line_color="#2e7d32", row=1, col=col,
                          annotation_text=f"best epoch {best_epoch}", annotation_position="top right")
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(height=380)
    return fig


def folds_figure(folds: pd.DataFrame) -> go.Figure:
    """Per walk-forward fold: the model's and every baseline's test accuracy (bars), and below, the
    margin over that fold's best baseline with its 90 % block-bootstrap interval (percentage points;
    green where the interval lies above zero, grey where it includes zero, red at a margin <= 0).
    ``folds``: reports/evaluate/walk_forward.csv (fold, accuracy, <name>_accuracy, margin,
    margin_ci_low, margin_ci_high; fractions)."""
    x = [f"fold {f}" for f in folds["fold"]]
    names = [c[: -len("_accuracy")] for c in folds.columns if c.endswith("_accuracy") and c != "balanced_accuracy"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08,
                        subplot_titles=("Accuracy per fold: model vs baselines", f"Margin over the fold's best baseline ({ci_label()})"))
    palette = ["#ff7f0e", "#9467bd", "#8c564b", "#2ca02c", "#7f7f7f", "#bcbd22"]
    fig.add_trace(go.Bar(x=x, y=folds["accuracy"], name="model", marker_color=COLORS["model"]), row=1, col=1)
    for i, n in enumerate(names):
        fig.add_trace(go.Bar(x=x, y=folds[f"{n}_accuracy"], name=n, marker_color=palette[i % len(palette)]), row=1, col=1)
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999", row=1, col=1)
    margin = 100 * folds["margin"].to_numpy(dtype="float64")
    err, colour = {}, np.where(margin > 0, COLORS["right"], COLORS["wrong"])
    if {"margin_ci_low", "margin_ci_high"} <= set(folds.columns):
        ci_low = 100 * folds["margin_ci_low"].to_numpy(dtype="float64")
        err = {"error_y": {"type": "data", "symmetric": False,
                           "array": 100 * folds["margin_ci_high"].to_numpy(dtype="float64") - margin,
                           "arrayminus": margin - ci_low}}
        colour = np.where(margin <= 0, COLORS["wrong"], np.where(ci_low > 0, COLORS["right"], COLORS["none"]))
    fig.add_trace(go.Scatter(x=x, y=margin, mode="markers", name="margin (pp)", marker={"size": 10, "color": colour.tolist()},
        showlegend=False,
        hovertemplate="%{x}: %{y:+.2f} pp<extra></extra>", **err), row=2, col=1)
    fig.add_hline(y=0, line_color="#999", row=2, col=1)
    accs = folds[["accuracy"] + [f"{n}_accuracy" for n in names]].to_numpy(dtype="float64")
    lo, hi = float(np.nanmin(accs)), float(np.nanmax(accs))
    fig.update_yaxes(title_text="accuracy", range=[max(0.0, lo - 0.03), min(1.0, hi + 0.02)], row=1, col=1)
    fig.update_yaxes(title_text="pp", row=2, col=1)
    fig.update_layout(barmode="group", height=520)
    return fig
