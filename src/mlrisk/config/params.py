"""The whole ``params.yaml``: every section and the rules across sections (the ``check_params``
stage, the CLI and the live bot validate it whole; each other stage reads only its sections with
:func:`mlrisk.config.base.load_sections`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from mlrisk.config.backtest import BacktestParams
from mlrisk.config.base import _Section, read_params_file, validate
from mlrisk.config.data import DataParams
from mlrisk.config.evaluate import EvaluateParams
from mlrisk.config.features import FeatureParams
from mlrisk.config.split import SplitParams
from mlrisk.config.train import TrainParams
from mlrisk.features import others_needed


class Params(_Section):
    """The whole ``params.yaml``."""

    data: DataParams = Field(default_factory=DataParams, description="Where the candles come from (fetch stage).")
    features: FeatureParams = Field(default_factory=FeatureParams, description="Features, label and window length "
                                    "(preprocess stage, walk-forward folds).")
    split: SplitParams = Field(default_factory=SplitParams, description="The chronological train/validation/test "
                               "split (preprocess stage).")
    train: TrainParams = Field(default_factory=TrainParams, description="The network and its fitting (train stage, "
                               "walk-forward folds).")
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams, description="How the model is scored, walk-forward "
                                     "and the holdout (evaluate stage).")
    backtest: BacktestParams = Field(default_factory=BacktestParams, description="The threshold strategy and its sweep "
                                     "(backtest stage, the live bot).")

    @model_validator(mode="after")
    def _others_fetched(self) -> "Params":
        missing = [s for s in others_needed(self.features.names) if s not in self.data.others]
        if missing:
            raise ValueError(f"features.names use {', '.join(missing)}: add {', '.join(missing)} to data.others "
                             "(and use data.source 'binance') so the fetch stage downloads their candles")
        return self


def market_warning(params: Params) -> str | None:
    """One line when the backtest would short or lever on spot candles (``data.market: spot`` and a
    strategy only futures can trade, :meth:`BacktestParams.futures_only`): spot has no funding, no
    mark price and no liquidation, so its figures are another instrument's. None otherwise."""
    needs = params.backtest.futures_only()
    if params.data.market != "spot" or not needs:
        return None
    return (f"the backtest shorts/leverages ({', '.join(needs)}) on spot candles: set data.market: futures to backtest "
            "the perpetual the live bot trades it on (its candles, funding history and mark-price liquidation)")


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping; raise :class:`ParamsError` with one line per problem."""
    return validate(Params, raw, source)


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
    """Read and validate the whole ``params.yaml``. Raises :class:`ParamsError` (one line) on any problem."""
    return parse_params(read_params_file(path), str(path))
