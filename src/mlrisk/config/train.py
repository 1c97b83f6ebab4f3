"""The ``train`` section: the network and how it is fitted (``train`` stage; the walk-forward folds use it too)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlrisk.config.base import _Section


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
