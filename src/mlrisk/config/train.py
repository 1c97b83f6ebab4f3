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

    type: Literal["lstm", "gru", "conv1d", "attention"] = Field(
        "lstm", description="Layer kind: lstm or gru (recurrent), conv1d (causal convolution, ReLU) or attention "
        "(causal multi-head self-attention with a residual connection and layer normalisation).")
    units: int = Field(32, ge=1, le=4096, description="Recurrent units, convolution filters, or the size of each "
                       "attention head.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after the layer, a fraction of units (0.2 = 20 %); "
                           "0 = off.")
    batch_norm: bool = Field(False, description="Batch normalisation after the layer.")
    kernel_size: int = Field(3, ge=1, le=512, description="conv1d: kernel width, in candles.")
    heads: int = Field(2, ge=1, le=64, description="attention: number of heads.")


class TrainParams(_Section):
    """The network and how it is fitted (``train`` stage)."""

    layers: list[LayerParams] = Field(default_factory=lambda: [LayerParams()], min_length=1,
                                      description="The sequence layers, input first.")
    dense: list[int] = Field(default_factory=lambda: [16], description="Units of each ReLU dense layer of the head, "
                             "after the sequence layers; [] = none.")
    dense_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each dense layer, a fraction of "
                                 "units; 0 = off.")
    output: Literal["auto", "sigmoid", "softmax"] = Field(
        "auto", description="Output layer: auto (sigmoid for 2 classes, softmax for 3), sigmoid or softmax.")
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = Field("adam", description="Keras optimizer.")
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="The optimizer's learning rate.")
    batch_size: int = Field(64, ge=1, le=65536, description="Windows per training batch.")
    epochs: int = Field(20, ge=1, le=10000, description="Most passes over the training windows (early stopping may "
                        "end sooner).")
    patience: int = Field(4, ge=0, le=1000, description="Early stopping: epochs without a better validation loss "
                          "before training stops, best weights restored; 0 = off.")
    class_weight: Literal["auto", "none"] = Field(
        "auto", description="auto: loss weights balanced from the training labels' class counts; none: equal weights.")
    seed: int = Field(42, ge=0, description="Random seed of the weights' initialisation and the shuffling (the "
                      "baselines use it too).")

    @field_validator("dense")
    @classmethod
    def _positive_units(cls, v: list[int]) -> list[int]:
        if any(u < 1 for u in v):
            raise ValueError("every dense layer needs units >= 1")
        return v
