"""The ``backtest`` section: the leveraged long/short threshold strategy and its sweep (``backtest``
stage; the live bot trades with the pinned run's values)."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from mlrisk.config.base import _Section


def _plural(name: str) -> str:
    """thresholds, leverages, pyramid_maxes, stop_losses, entries."""
    if name.endswith(("s", "x")):
        return name + "es"
    if name.endswith("y") and name[-2:-1] not in "aeiou":
        return name[:-1] + "ies"
    return name + "s"


class BacktestParams(_Section):
    """The leveraged long/short threshold strategy (``backtest`` stage). Fractions unless ``_bps``."""

    initial_equity: float = Field(10_000.0, gt=0)
    threshold: float = Field(0.08, ge=0.0, le=0.5)
    direction: Literal["both", "long", "short"] = "both"
    leverage: float = Field(3.0, ge=1.0, le=125.0)
    order_size: float = Field(0.1, gt=0.0, le=1.0)
    pyramid_max: int = Field(1, ge=1, le=100)
    entry: Literal["market", "limit"] = "market"
    limit_offset: float = Field(0.001, ge=0.0, lt=0.5)
    limit_ttl: int = Field(3, ge=1, le=10000)
    hold: int = Field(0, ge=0)
    take_profit: float | None = Field(None, gt=0.0)
    stop_loss: float | None = Field(None, gt=0.0, lt=1.0)
    exit_check: Literal["intrabar", "close"] = "intrabar"
    fee_rate: float = Field(0.0005, ge=0.0, lt=0.1)
    maker_fee_rate: float = Field(0.0002, ge=0.0, lt=0.1)
    slippage_bps: float = Field(1.0, ge=0.0, lt=1000.0)
    funding_rate: float = Field(0.0, gt=-0.1, lt=0.1)
    maintenance_margin_rate: float = Field(0.004, ge=0.0, lt=0.5)
    liquidation_fee_rate: float = Field(0.0, ge=0.0, lt=0.1)
    min_notional: float = Field(5.0, ge=0.0)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    extra_trials: int = Field(0, ge=0)  # experiments tried elsewhere, counted as trials by the deflated Sharpe ratio

    @model_validator(mode="after")
    def _check_sweep(self) -> "BacktestParams":
        allowed = {_plural(f): f for f in type(self).model_fields if f not in ("sweep", "extra_trials")}
        for key, values in self.sweep.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"backtest.sweep: unknown list {key!r}{hint}; use plural names like thresholds, leverages")
            if not values:
                raise ValueError(f"backtest.sweep.{key} is empty")
            for v in values:  # each value must be valid for the scalar param
                try:
                    type(self).model_validate({**self.model_dump(exclude={"sweep"}), allowed[key]: v})
                except ValidationError as e:
                    raise ValueError(f"backtest.sweep.{key}: value {v!r}: {e.errors()[0]['msg']}") from None
        return self

    def sweep_grid(self) -> list[dict[str, Any]]:
        """All combinations of the sweep lists, as param-name -> value dicts (singular names)."""
        import itertools

        allowed = {_plural(f): f for f in type(self).model_fields if f != "sweep"}
        keys = [allowed[k] for k in self.sweep]
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.sweep.values())]
