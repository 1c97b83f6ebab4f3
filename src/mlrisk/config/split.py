"""The ``split`` section: the chronological train/validation/test split (``preprocess`` stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlrisk.config.base import _Section, check_date, date_as_str
from mlrisk.times import utc


class SplitParams(_Section):
    """Chronological train/validation/test split. Fractions of rows, or UTC start dates."""

    method: Literal["fraction", "date", "final"] = Field(
        "fraction", description="fraction (shares of rows), date (UTC start dates of validation and test) or final "
        "(training plus a validation tail, no test: walk-forward's pinned model); a purge gap of horizon + seq_len "
        "candles separates the parts.")
    train: float = Field(0.7, gt=0.0, lt=1.0, description="method fraction: share of rows for training (0.7 = 70 %).")
    val: float = Field(0.15, gt=0.0, lt=1.0, description="method fraction: share of rows for validation (early "
                       "stopping); test is the rest. method final: share of the rows at the end that validate.")
    val_start: str | None = Field(None, description="method date: first UTC date (or ISO timestamp) of validation.")
    test_start: str | None = Field(None, description="method date: first UTC date (or ISO timestamp) of test.")

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
