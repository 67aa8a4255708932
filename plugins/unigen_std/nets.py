"""The multilayer perceptron, sized from the shapes of the edge it computes, and a set of k
of them picked by a one-hot input (k generators, as in MAD-GAN)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from unigen.api.kinds import Arch, Options

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}
OUT = {"none": None, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class LayerOptions(Options):
    """What every MLP here takes (`multi_mlp` takes only these)."""

    # A width of 0 or less would build no layer.
    hidden: list[Annotated[int, Field(gt=0)]] = Field([256, 256], description="widths of the hidden layers, from the input side; `[]`: one linear layer")
    activation: Literal["relu", "leaky_relu", "tanh", "elu", "gelu", "softplus"] = Field("relu", description="nonlinearity after each hidden layer (`leaky_relu` with slope 0.2)")
    out_activation: Literal["none", "tanh", "sigmoid"] = Field("none", description="applied to the output: `none` for logits or a distribution's parameters, `tanh` for data in [-1, 1], `sigmoid` for data in [0, 1]")


class MLPOptions(LayerOptions):
    batchnorm: bool = Field(False, description="batch normalisation after each hidden layer's linear map, before its nonlinearity")
    dropout: float = Field(0.0, description="probability of dropout after each hidden layer's nonlinearity (0: none)")


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


class MultiMLP(nn.Module):
    """k separate MLPs; the first input (one-hot, k values) says which one maps each row's
    other inputs. The rows are grouped by network and padded to the largest group, so that each
    layer of all k networks is one batched matrix product, and each network sees only its rows.
    (On a GPU, reading the largest group's size is one host synchronisation per forward.)"""

    def __init__(self, k: int, n_in: int, output: tuple[int, ...], o: LayerOptions) -> None:
        super().__init__()
        widths = [n_in, *o.hidden, math.prod(output)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(widths[:-1], widths[1:]):
            bound = 1 / math.sqrt(a)  # nn.Linear's default initialisation, for each network
            self.weights.append(nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(k, b).uniform_(-bound, bound)))
        self.act = ACTIVATIONS[o.activation]()
        out = OUT[o.out_activation]
        self.out_act = out() if out is not None else nn.Identity()
        self.k, self.output = k, output

    def forward(self, which: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        x = MLP._join(inputs)
        index = which.argmax(1)
        order = index.argsort(stable=True)
        group = index[order]
        counts = torch.bincount(index, minlength=self.k)
        pos = torch.arange(len(x), device=x.device) - (counts.cumsum(0) - counts)[group]  # row within its group
        h = x.new_zeros(self.k, int(counts.max()), x.shape[1])
        h = h.index_put((group, pos), x.index_select(0, order))
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            h = self.act(h) if i < last else self.out_act(h)
        y = h[group, pos]
        y = torch.empty_like(y).index_copy(0, order, y)
        return y if len(self.output) == 1 else y.view(-1, *self.output)

    def single(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Network i alone on rows x (flattened inputs after the one-hot)."""
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w[i] + b[i]
            x = self.act(x) if j < last else self.out_act(x)
        return x


class MultiMLPArch(Arch):
    Options = LayerOptions
    doc = "k separate MLPs (k generators, MAD-GAN): the first parent, one-hot with k values, picks the network that maps the other parents, flattened and concatenated"

    def check(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: LayerOptions) -> list[str]:
        if len(inputs) < 2 or len(inputs[0]) != 1:
            return ["`multi_mlp` needs a one-hot first parent (shape [k]) that picks the network, and at least one more parent it maps, e.g. `generative: \"c, z -> x\"` with `c: {prior: categorical, shape: [k]}`."]
        return []

    def build(self, inputs: list[tuple[int, ...]], output: tuple[int, ...], options: LayerOptions) -> nn.Module:
        return MultiMLP(inputs[0][0], sum(math.prod(s) for s in inputs[1:]), output, options)
