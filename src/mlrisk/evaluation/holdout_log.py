"""The holdout log (``holdout.json`` beside ``params.yaml``, committed): one record per use of the
final holdout, so that a second look is known as such. Read by ``mlrisk holdout`` and the report."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlrisk.errors import DataError

LOG_VERSION = 1


def read_log(path: str | Path) -> dict[str, Any]:
    """The holdout log (``{"version", "uses": [...]}``); an absent file is an empty log."""
    path = Path(path)
    if not path.exists():
        return {"version": LOG_VERSION, "uses": []}
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}): restore it from git (`git checkout {path}`)") from None
    if not isinstance(log, dict) or not isinstance(log.get("uses"), list) or not all(isinstance(u, dict) for u in log["uses"]):
        raise DataError(f"{path}: not a holdout log: restore it from git (`git checkout {path}`)")
    return log


def previous_uses(log: dict[str, Any], first: str, last: str) -> list[dict[str, Any]]:
    """Earlier uses whose holdout overlaps ``[first, last]`` (UTC ISO times)."""
    return [u for u in log["uses"] if not (u["last"] < first or u["first"] > last)]


def record_use(path: str | Path, use: dict[str, Any]) -> dict[str, Any]:
    """Append ``use`` to the log atomically; returns the new log."""
    from mlrisk.io import write_json

    log = read_log(path)
    log["uses"].append({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), **use})
    write_json(path, log)
    return log
