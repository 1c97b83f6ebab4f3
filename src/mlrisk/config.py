"""``params.yaml``: one pydantic model per section, unknown keys forbidden, ranges checked.

Every stage validates the whole file before doing any work, so a typo anywhere stops the
pipeline with a one-line message that names the key, the bad value and what is allowed.
Units: all rates, returns, offsets and fees are fractions (0.001 = 0.1 %), except
``slippage_bps`` (basis points); candle counts are integers; dates are UTC.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlrisk.errors import ParamsError
from mlrisk.features import SYMBOL, ALLOWED as ALLOWED_FEATURES, is_known as is_known_feature, others_needed
from mlrisk.times import INTERVAL_MS, INTERVALS, candles_per_day, utc



class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_date(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        utc(v)
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a date (use YYYY-MM-DD or an ISO timestamp, UTC): {e}") from None
    return str(v)


class DataParams(_Section):
    """Where the candles come from (``fetch`` stage)."""

    source: Literal["sample", "binance", "file"] = "sample"
    symbol: str = Field("BTCUSDT", min_length=1, pattern=r"^[A-Z0-9]{2,30}$")
    interval: Literal[INTERVALS] = "1h"  # type: ignore[valid-type]
    market: Literal["spot", "futures"] = "spot"
    start: str | None = None
    end: str | None = None
    files: list[str] = Field(default_factory=list)
    others: list[str] = Field(default_factory=list)  # other symbols fetched alongside (binance source), for SYMBOL:feature names
    gap_policy: Literal["error", "keep", "ffill"] = "ffill"
    max_fill: int | None = Field(None, ge=0, le=100_000)  # ffill: longest gap filled, candles; None = one day


    _dates = field_validator("start", "end")(_check_date)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dates_as_str(cls, v: Any) -> Any:
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _source_needs(self) -> "DataParams":
        for sym in self.others:
            if not SYMBOL.fullmatch(sym) or sym == self.symbol:
                raise ValueError(f"data.others: {sym!r} is not another symbol like ETHUSDT")
        if self.others and self.source != "binance":
            raise ValueError(f"data.others ({', '.join(self.others)}) needs data.source 'binance': the sample ships "
                             "BTCUSDT only and dump files name one symbol")
        if self.source == "file" and not self.files:
            raise ValueError("data.source 'file' needs data.files: a list of Binance kline CSV/zip paths")
        if self.source == "binance" and self.start is None:
            raise ValueError("data.source 'binance' needs data.start (UTC date, e.g. 2023-01-01)")
        if self.start and self.end and utc(self.start) >= utc(self.end):
            raise ValueError(f"data.start ({self.start}) must be before data.end ({self.end})")
        return self

    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.interval]

    @property
    def max_fill_candles(self) -> int:
        """The longest gap ``ffill`` fills, in candles (``max_fill``, or one day of candles)."""
        return self.max_fill if self.max_fill is not None else candles_per_day(self.interval_ms)


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


class SplitParams(_Section):
    """Chronological train/validation/test split. Fractions of rows, or UTC start dates."""

    method: Literal["fraction", "date", "final"] = "fraction"  # final: train + a `val` tail, no test (walk-forward's pinned model)
    train: float = Field(0.7, gt=0.0, lt=1.0)
    val: float = Field(0.15, gt=0.0, lt=1.0)
    val_start: str | None = None
    test_start: str | None = None

    _dates = field_validator("val_start", "test_start")(_check_date)

    @field_validator("val_start", "test_start", mode="before")
    @classmethod
    def _dates_as_str(cls, v: Any) -> Any:
        return None if v is None else str(v)

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


class LayerParams(_Section):
    """One sequence layer. ``lstm``/``gru``: recurrent, ``return_sequences`` set automatically.
    ``conv1d``: causal 1-D convolution with ``units`` filters of ``kernel_size`` candles (ReLU).
    ``attention``: causal multi-head self-attention (``heads`` heads of size ``units``) with a
    residual connection and layer normalisation. A convolution or attention layer that ends the
    stack is followed by global average pooling over time."""

    type: Literal["lstm", "gru", "conv1d", "attention"] = "lstm"
    units: int = Field(32, ge=1, le=4096)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False
    kernel_size: int = Field(3, ge=1, le=512)
    heads: int = Field(2, ge=1, le=64)


class TrainParams(_Section):
    """The network and how it is fitted (``train`` stage)."""

    layers: list[LayerParams] = Field(default_factory=lambda: [LayerParams()], min_length=1)
    dense: list[int] = Field(default_factory=lambda: [16])
    dense_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    output: Literal["auto", "sigmoid", "softmax"] = "auto"  # auto: sigmoid for 2 classes, softmax for 3
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=65536)
    epochs: int = Field(20, ge=1, le=10000)
    patience: int = Field(4, ge=0, le=1000)
    class_weight: Literal["auto", "none"] = "auto"
    seed: int = Field(42, ge=0)

    @field_validator("dense")
    @classmethod
    def _positive_units(cls, v: list[int]) -> list[int]:
        if any(u < 1 for u in v):
            raise ValueError("every dense layer needs units >= 1")
        return v


class WalkForwardParams(_Section):
    """Walk-forward evaluation (see :mod:`mlrisk.evaluation.folds`). Counts are candles."""

    window: Literal["expanding", "rolling"] = "expanding"
    train: int = Field(4380, ge=50)        # the first (expanding) or every (rolling) training window, validation tail included
    test: int = Field(1460, ge=10)         # candles per test block, and the step between folds
    val: float = Field(0.15, gt=0.0, lt=0.9)  # share of each training window that validates early stopping
    embargo: int = Field(0, ge=0)          # extra candles left out between training and test, beyond the purge
    max_folds: int = Field(0, ge=0)        # 0 = as many as fit
    epochs: int | None = Field(None, ge=1)


class EvaluateParams(_Section):
    """How the model is scored (``evaluate`` stage): on the split's test part, or walk-forward over
    the whole history; either way the last ``holdout`` candles are left for ``mlrisk holdout``."""

    mode: Literal["split", "walk_forward"] = "split"
    holdout: int = Field(0, ge=0)   # final candles no stage sees; spent once by `mlrisk holdout`
    confidence_bins: int = Field(10, ge=2, le=100)
    calibration_bins: int = Field(10, ge=2, le=100)
    walk_forward: WalkForwardParams = Field(default_factory=WalkForwardParams)


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


class Params(_Section):
    """The whole ``params.yaml``."""

    data: DataParams = Field(default_factory=DataParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    split: SplitParams = Field(default_factory=SplitParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    backtest: BacktestParams = Field(default_factory=BacktestParams)

    @model_validator(mode="after")
    def _others_fetched(self) -> "Params":
        missing = [s for s in others_needed(self.features.names) if s not in self.data.others]
        if missing:
            raise ValueError(f"features.names use {', '.join(missing)}: add {', '.join(missing)} to data.others "
                             "(and use data.source 'binance') so the fetch stage downloads their candles")
        return self


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the key at ``loc`` (for listing allowed keys)."""
    model: Any = Params
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) if loc else "(top level)"
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        allowed = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}? " if close else ""
        return f"unknown key {key!r}: {hint}allowed here: {', '.join(allowed)}"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if msg.startswith(f"{key}.") or msg.startswith(f"{key} "):
        return msg
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err.get("input"), dict):
        return f"{key} = {err['input']!r}: {msg}"
    return f"{key}: {msg}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise :class:`ParamsError` with one line per problem."""
    if raw is None:
        raise ParamsError(f"{source} is empty: it needs the sections {', '.join(Params.model_fields)}; "
                          f"restore it with `git checkout {source}`")
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (data, features, ...), got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        errors = [_format_error(err) for err in e.errors()]
        raise ParamsError(f"{source}: " + "; ".join(errors)) from None


def missing_keys(raw: dict[str, Any], keys: list[str]) -> list[str]:
    """The dotted keys (``data.symbol``, ``train``) absent from the parsed params mapping ``raw``."""
    out = []
    for key in keys:
        node: Any = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                out.append(key)
                break
            node = node[part]
    return out


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``. Raises :class:`ParamsError` (one line) on any problem."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_params(raw, str(path))
