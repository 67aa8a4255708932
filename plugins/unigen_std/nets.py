"""The multilayer perceptron, sized from the shapes of the edge it computes."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from unigen.kinds import Arch, Options

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}
OUT = {"none": None, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLPOptions(Options):
    hidden: list[int] = [256, 256]
    activation: Literal["relu", "leaky_relu", "tanh", "elu", "gelu", "softplus"] = "relu"
    batchnorm: bool = False
    dropout: float = 0.0
    out_activation: Literal["none", "tanh", "sigmoid"] = "none"


class MLP(nn.Module):
    def __init__(self, n_in: int, output: tuple[int, ...], o: MLPOptions) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.ends: list[int] = []  # where each hidden layer's block ends in `body`
        width = n_in
        for h in o.hidden:
            layers.append(nn.Linear(width, h))
            if o.batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[o.activation]())
            if o.dropout:
                layers.append(nn.Dropout(o.dropout))
            self.ends.append(len(layers))
            width = h
        self.n_hidden = len(layers)
        layers.append(nn.Linear(width, math.prod(output)))
        if OUT[o.out_activation] is not None:
            layers.append(OUT[o.out_activation]())
        self.body = nn.Sequential(*layers)
        self.output = output

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        y = self.body(self._join(inputs))
        return y if len(self.output) == 1 else y.view(-1, *self.output)

    @staticmethod
    def _join(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return inputs[0].flatten(1) if len(inputs) == 1 else torch.cat([t.flatten(1) for t in inputs], 1)

    def features(self, *inputs: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The activations of hidden layer `layer` (1 = the first), after its nonlinearity; by
        default the last hidden layer, what the output layer reads (feature matching)."""
        if layer is None:
            return self.body[: self.n_hidden](self._join(inputs))
        if not 1 <= layer <= len(self.ends):
            raise ValueError(f"layer {layer} of an MLP with {len(self.ends)} hidden layers")
        return self.body[: self.ends[layer - 1]](self._join(inputs))


class MLPArch(Arch):
    Options = MLPOptions
    doc = "fully connected network; parents flattened and concatenated"

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: MLPOptions) -> nn.Module:
        return MLP(sum(math.prod(s) for s in inputs), output, options)

    def feature_layers(self, options: MLPOptions) -> list[tuple[int, ...]]:
        return [(h,) for h in options.hidden]
