"""The journal: one JSON line per candle and per event in the log file, a readable line on stderr
(:class:`CandleLog`), and each line to its observers (the metrics and alerts,
:mod:`mlrisk.live.observe`). It never receives settings, so never a secret."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from mlrisk.live.state import now_ms
from mlrisk.times import from_ms


class CandleLog:
    """One line per candle: a JSON line to ``path`` (None: none) and a readable line to ``stream``
    (None: none). Never receives settings, so never a secret."""

    def __init__(self, path: str | Path | None, stream: TextIO | None = sys.stderr) -> None:
        self.fh = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a", encoding="utf-8")
        self.stream = stream
        #: called with every line after it is written (a dict, the JSON line's fields); must not raise
        self.observers: list[Callable[[dict[str, Any]], None]] = []

    def _tell(self, record: dict[str, Any]) -> None:
        for observe in self.observers:
            observe(record)

    def write(self, record: dict[str, Any]) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps(record, allow_nan=False) + "\n")
            self.fh.flush()
        if self.stream is not None:
            self.stream.write(readable(record) + "\n")
            self.stream.flush()
        self._tell(record)

    def event(self, kind: str, **fields: Any) -> None:
        """A non-candle line (start, stop, warning)."""
        record = {"event": kind, "at": from_ms(now_ms()).isoformat(), **fields}
        if self.fh is not None:
            self.fh.write(json.dumps(record, default=str) + "\n")
            self.fh.flush()
        if self.stream is not None:
            self.stream.write(f"live: {kind}: " + ", ".join(f"{k} {v}" for k, v in fields.items()) + "\n")
            self.stream.flush()
        self._tell(record)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def readable(r: dict[str, Any]) -> str:
    p = "  n/a " if r["p_up"] is None else f"{r['p_up']:.4f}"
    orders = ", ".join(f"{o['side']} {o['type']} {o['leg']}" + (f" @ {o['price']:.2f}" if "price" in o else "")
                       for o in r["orders"]) or "-"
    pos = r["position"]
    pos_s = "flat" if pos["side"] == "flat" else f"{pos['side']} {pos['qty']:.6f} @ {pos['entry_price']:.2f}"
    trades = "".join(f"; closed {t['side']} ({t['reason']}) pnl {t['pnl']:+.2f}" for t in r["trades"])
    extra = "".join(f"; {b}" for b in r["blocked"]) + (f"; HALTED ({r['halt_reason']})" if r["halted"] else "")
    return (f"live: {r['time'][:16]}Z p_up {p} {r['decision']:>5} | orders {orders} | {pos_s} | "
            f"equity {r['equity']:.2f}{trades}{extra}")
