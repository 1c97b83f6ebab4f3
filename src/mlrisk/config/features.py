"""The ``features`` section: the causal per-candle features, the label and the window length
(``preprocess`` stage; the walk-forward folds use it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section
from mlrisk.features import ALLOWED as ALLOWED_FEATURES, is_known as is_known_feature


class LabelParams(_Section):
    """What the model predicts. ``horizon`` in candles; ``dead_zone`` and ``target`` are fractions."""

    kind: Literal["direction", "barrier"] = "direction"
    horizon: int = Field(1, ge=1, le=1000)
    dead_zone: float = Field(0.0, ge=0.0, lt=0.5)
    target: float = Field(0.01, gt=0.0, lt=1.0)
    flat_class: bool = False


class FeatureParams(_Section):
    """Causal per-candle features, the label and the sequence length (``preprocess`` stage)."""

    names: list[str] = Field(default_factory=lambda: ["upper_wick", "lower_wick", "close_pct", "volume_pct"], min_length=1)
    seq_len: int = Field(48, ge=1, le=2000)
    label: LabelParams = Field(default_factory=LabelParams)
    balance: Literal["none", "undersample"] = "none"
    seed: int = Field(42, ge=0)
    clip: float = Field(0.001, ge=0.0, lt=0.5)  # clip each feature at its train quantiles clip and 1 - clip before scaling; 0 = off

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
