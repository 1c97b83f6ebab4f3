"""Plotly helpers: every HTML file embeds plotly.js, so it opens offline (no CDN)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from mlrisk.io import atomic_path

COLORS = {"up": "#26a69a", "down": "#ef5350", "right": "#2e7d32", "wrong": "#c62828", "none": "#9e9e9e",
          "model": "#1f77b4", "baseline": "#ff7f0e", "equity": "#1f77b4", "hold": "#7f7f7f"}


def write_html(fig: go.Figure, path: str | Path) -> None:
    """Self-contained HTML (plotly.js embedded), written atomically. The div id is fixed, so the same
    figure always gives the same bytes (DVC sees no change where there is none)."""
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True, div_id="chart",
                       config={"displaylogo": False, "responsive": True})


def verdict_banner(fig: go.Figure, text: str, good: bool) -> None:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0, y=1.07, xanchor="left", yanchor="bottom", showarrow=False,
                       font={"size": 14, "color": "#1b5e20" if good else "#b71c1c"},
                       bgcolor="#e8f5e9" if good else "#ffebee", bordercolor="#888", borderwidth=1)
