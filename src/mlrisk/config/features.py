"""The ``features`` section: the causal per-candle features, the label and the window length
(``preprocess`` stage; the walk-forward folds use it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section
from mlrisk.features import ALLOWED as ALLOWED_FEATURES, METRICS_LAG_MINUTES, is_known as is_known_feature


class LabelParams(_Section):
    """What the model predicts. ``horizon`` in candles; ``dead_zone`` and ``target`` are fractions."""

    kind: Literal["direction", "barrier"] = Field(
        "direction", description="direction: up if the close `horizon` candles ahead is above the close now; barrier: "
        "up or down by which of close × (1 ± target) the highs/lows reach first within `horizon` candles.")
    horizon: int = Field(1, ge=1, le=1000, description="How far ahead the label looks, in candles.")
    dead_zone: float = Field(0.0, ge=0.0, lt=0.5, description="direction: a return whose absolute value is below this "
                             "fraction is unlabelled (or the class flat); 0 = off.")
    target: float = Field(0.01, gt=0.0, lt=1.0, description="barrier: the up/down barrier distance, as a fraction of "
                          "the close (0.01 = 1 %).")
    flat_class: bool = Field(False, description="direction with dead_zone > 0: keep a third class flat (softmax output) "
                             "instead of leaving those candles unlabelled.")


class FeatureParams(_Section):
    """Causal per-candle features, the label and the sequence length (``preprocess`` stage)."""

    names: list[str] = Field(
        default_factory=lambda: ["upper_wick", "lower_wick", "close_pct", "volume_pct"], min_length=1,
        description="Causal per-candle features, in input order: upper_wick, lower_wick, close_pct, volume_pct, range, "
        "body, taker_buy_share, log_volume_change, hour_sin/cos, dow_sin/cos (UTC), log_return_<N>, realised_vol_<N>, "
        "volume_z_<N> (N candles), SYMBOL:<feature> for a symbol in data.others (candle features), and with data.market futures "
        "(point-in-time: a value from the close at which Binance had published it): funding_rate (the last settled "
        "rate, fraction), funding_change (it minus the settled rate before it), basis_spot (perp close / spot close - 1), "
        "basis_mark (perp close / mark close - 1), log_open_interest_change (log change of the open interest value; "
        "needs the metrics dumps).")
    candles: Literal["traded", "spot"] = Field(
        "traded", description="The candles the model learns on (features and labels): traded = data.market's (the "
        "perpetual's on a futures run: the instrument the bot trades), spot = the spot candles fetched beside a futures "
        "run's (longer, cleaner history, what most research uses; but the bot trades the perpetual, whose prices differ "
        "from spot by the basis). The backtest takes its prices from the traded candles either way.")
    metrics_lag: int = Field(METRICS_LAG_MINUTES, ge=0, le=10_080, description="Publication lag of a metrics row (open interest), minutes "
                             "after its create_time before a feature may use it; 5 = one 5-minute period (Binance does "
                             "not say whether create_time stamps its start or end); 1440 models a bot reading the daily "
                             "dumps.")
    seq_len: int = Field(48, ge=1, le=2000, description="Candles per input window (the network sees the last seq_len "
                         "candles up to and including the one whose close it predicts from).")
    label: LabelParams = Field(default_factory=LabelParams, description="What the model predicts (the label).")
    balance: Literal["none", "undersample"] = Field(
        "none", description="Class balance of the training part: none, or undersample the majority class (training "
        "part only; validation and test keep every window).")
    seed: int = Field(42, ge=0, description="Random seed of the undersampling.")
    clip: float = Field(0.001, ge=0.0, lt=0.5, description="Clip each feature at its training-part quantiles clip and "
                        "1 - clip before scaling (a fraction: 0.001 = the 0.1 % tails); 0 = off.")

    @field_validator("names")
    @classmethod
    def _known_features(cls, v: list[str]) -> list[str]:
        for name in v:
            if not is_known_feature(name):
                raise ValueError(f"unknown feature {name!r}; allowed: {', '.join(ALLOWED_FEATURES)}")
        if len(set(v)) != len(v):
            raise ValueError("feature names must be unique")
        return v

    @model_validator(mode="after")
    def _flat_needs_dead_zone(self) -> "FeatureParams":
        if self.label.flat_class and not (self.label.kind == "direction" and self.label.dead_zone > 0):
            raise ValueError("features.label.flat_class needs kind 'direction' and dead_zone > 0")
        return self
