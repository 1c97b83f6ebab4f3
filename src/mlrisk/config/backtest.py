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

    initial_equity: float = Field(10_000.0, gt=0, description="Starting balance, in quote currency (USDT).")
    threshold: float = Field(0.08, ge=0.0, le=0.5, description="Signal at a candle's close: long if P(up) >= 0.5 + "
                             "threshold, short if P(up) <= 0.5 - threshold (a probability distance, 0.08 = 8 points).")
    direction: Literal["both", "long", "short"] = Field(
        "both", description="Sides traded: both, long or short only (a signal for the other side only closes).")
    leverage: float = Field(3.0, ge=1.0, le=125.0, description="Notional per unit of margin (isolated margin), x.")
    order_size: float = Field(0.1, gt=0.0, le=1.0, description="Margin per entry, a fraction of the free balance "
                              "(equity minus margin in use) at the fill (0.1 = 10 %).")
    pyramid_max: int = Field(1, ge=1, le=100, description="Most entries per side, filled plus pending.")
    entry: Literal["market", "limit"] = Field(
        "market", description="market: fills at the next candle's open plus slippage; limit: rests at close × (1 ∓ "
        "limit_offset) and fills on a later candle that trades through it.")
    limit_offset: float = Field(0.001, ge=0.0, lt=0.5, description="entry limit: the limit price's distance from the "
                                "signal candle's close, a fraction (0.001 = 0.1 %).")
    limit_ttl: int = Field(3, ge=1, le=10000, description="entry limit: candles a limit order rests before it is "
                           "cancelled.")
    hold: int = Field(0, ge=0, description="Close a position this many candles after its first entry (at that "
                      "candle's open); 0 = never.")
    take_profit: float | None = Field(None, gt=0.0, description="Take-profit distance, a fraction of the average entry "
                                      "price (0.01 = 1 %); null = off.")
    stop_loss: float | None = Field(None, gt=0.0, lt=1.0, description="Stop-loss distance, a fraction of the average "
                                    "entry price (0.01 = 1 %); null = off.")
    exit_check: Literal["intrabar", "close"] = Field(
        "intrabar", description="intrabar: take-profit/stop fill at their level when the candle's high/low touches it "
        "(stop first when both are); close: checked and filled at the close (the original tool's rule).")
    fee_rate: float = Field(0.0005, ge=0.0, lt=0.1, description="Taker fee on market entries and every exit, a fraction "
                            "of the notional (0.0005 = 0.05 %).")
    maker_fee_rate: float = Field(0.0002, ge=0.0, lt=0.1, description="Maker fee on limit entries, a fraction of the "
                                  "notional (0.0002 = 0.02 %).")
    slippage_bps: float = Field(1.0, ge=0.0, lt=1000.0, description="Slippage against the trade on market entries and "
                                "every exit but liquidation, in basis points (1 bps = 0.01 %).")
    funding_rate: float = Field(0.0, gt=-0.1, lt=0.1, description="Funding per 8 hours on the open notional, charged at "
                                "each close pro rata to the candle, a fraction; paid by longs when positive.")
    maintenance_margin_rate: float = Field(0.004, ge=0.0, lt=0.5, description="Maintenance margin rate of the "
                                           "isolated-margin liquidation price, a fraction of the notional (0.004 = 0.4 %).")
    liquidation_fee_rate: float = Field(0.0, ge=0.0, lt=0.1, description="Fee on a liquidation, on top of the lost "
                                        "margin, a fraction of the notional.")
    min_notional: float = Field(5.0, ge=0.0, description="Smallest entry notional, in quote currency (USDT); smaller "
                                "entries are skipped. With data.market futures the backtest stage uses the symbol's "
                                "futures minimum notional from the shipped exchange-info snapshot instead.")
    lot_step: float = Field(0.0, ge=0.0, description="Quantity step of an entry (the exchange's LOT_SIZE stepSize, "
                            "base asset units): quantities are rounded down to it; 0 = no rounding. With data.market "
                            "futures the backtest stage uses the symbol's futures step from the shipped exchange-info "
                            "snapshot instead.")
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="Lists of values under the plural names of "
                                        "the parameters above (thresholds, leverages, order_sizes, pyramid_maxes, "
                                        "entries, stop_losses, ...); every combination is backtested in one go.")
    extra_trials: int = Field(0, ge=0, description="Experiments tried elsewhere, counted as trials by the deflated "
                              "Sharpe ratio (on top of the sweep's combinations).")

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

    def futures_only(self) -> list[str]:
        """What in this strategy (its main values and its sweep) only a futures account can do: shorting
        (``direction`` both/short) and leverage above 1, e.g. ``["direction both", "leverage 3.0"]``;
        empty for a long-only strategy at leverage 1, which spot trades as backtested."""
        directions = {self.direction, *self.sweep.get("directions", [])}
        leverages = {float(self.leverage), *(float(v) for v in self.sweep.get("leverages", []))}
        out = [f"direction {d}" for d in sorted(directions) if d != "long"]
        return out + [f"leverage {lv:g}" for lv in sorted(leverages) if lv > 1]

    def sweep_grid(self) -> list[dict[str, Any]]:
        """All combinations of the sweep lists, as param-name -> value dicts (singular names)."""
        import itertools

        allowed = {_plural(f): f for f in type(self).model_fields if f != "sweep"}
        keys = [allowed[k] for k in self.sweep]
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.sweep.values())]
