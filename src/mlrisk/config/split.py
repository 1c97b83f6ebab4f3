"""The ``split`` section: the chronological train/validation/test split (``preprocess`` stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section, check_date, date_as_str
from mlrisk.times import utc


class SplitParams(_Section):
    """Chronological train/validation/test split. Fractions of rows, or UTC start dates."""

    method: Literal["fraction", "date", "final"] = "fraction"  # final: train + a `val` tail, no test (walk-forward's pinned model)
    train: float = Field(0.7, gt=0.0, lt=1.0)
    val: float = Field(0.15, gt=0.0, lt=1.0)
    val_start: str | None = None
    test_start: str | None = None

    _dates = field_validator("val_start", "test_start")(check_date)
    _dates_as_str = field_validator("val_start", "test_start", mode="before")(date_as_str)

    @model_validator(mode="after")
    def _consistent(self) -> "SplitParams":
        if self.method == "fraction" and self.train + self.val >= 1.0:
            raise ValueError(f"split.train + split.val = {self.train + self.val:g} must be < 1 (the rest is test)")
        if self.method == "date":
            if not (self.val_start and self.test_start):
                raise ValueError("split.method 'date' needs split.val_start and split.test_start")
            if utc(self.val_start) >= utc(self.test_start):
                raise ValueError("split.val_start must be before split.test_start")
        return self
