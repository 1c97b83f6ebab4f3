"""mkdocs hook: fills the generated reference tables into the pages at build time.

A page that contains ``<!-- params-reference -->`` gets every key of ``params.yaml`` (from the
pydantic models), one that contains ``<!-- live-settings-reference -->`` every variable of the
live bot's settings, one that contains ``<!-- live-metrics-reference -->`` the bot's Prometheus
metrics (see :mod:`mlrisk.docs_reference`).
"""

from __future__ import annotations

from typing import Any

from mlrisk.docs_reference import (live_settings_model, metrics_reference, params_model, params_reference,
                                   settings_reference)

MARKERS = {
    "<!-- params-reference -->": lambda: params_reference(params_model()),
    "<!-- live-settings-reference -->": lambda: settings_reference(live_settings_model()),
    "<!-- live-metrics-reference -->": metrics_reference,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker with its generated markdown."""
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
