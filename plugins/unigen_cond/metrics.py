"""`cond_accuracy`: the labels of generated samples, read back by 1-nearest-neighbour."""

from __future__ import annotations

import torch

from unigen.api.contexts import GraphView, ModelView
from unigen.api.kinds import Metric


def label_parents(graph: GraphView, var: str) -> list[str]:
    """Parents of `var`'s generative edge that the p-trace reads from the data and that are
    vectors [K] (one-hot labels)."""
    e = graph.into(var, "generative")
    if e is None:
        return []
    return [p for p in e.parents if graph.p_source(p) == "data" and len(graph.shape(p)) == 1 and graph.shape(p)[0] > 1]


def nearest_labels(train_x: torch.Tensor, train_y: torch.Tensor, x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """The label of each row of x's nearest training point (Euclidean)."""
    out = []
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start : start + chunk].flatten(1).float(), train_x.flatten(1).float())
        out.append(train_y[d.argmin(1)])
    return torch.cat(out)


class CondAccuracy(Metric):
    doc = "conditional samples: accuracy of a 1-nearest-neighbour classifier (fit on the training split) on x generated for the test split's labels, and on the real test x for reference"

    def _target(self, model: ModelView) -> tuple[str, str] | None:
        var = model.sampled_variable()
        if var is None:
            return None
        labels = [y for y in label_parents(model.program.graph, var) if y in model.fields]
        return (var, labels[0]) if labels else None

    def applies(self, model: ModelView) -> bool:
        return self._target(model) is not None and bool(model.dataset.test)

    def compute(self, model: ModelView) -> dict[str, float]:
        target = self._target(model)
        assert target is not None
        var, label = target
        fx, fy = model.fields[var], model.fields[label]
        train_x, train_y = model.dataset.train[fx], model.dataset.train[fy].argmax(1)
        test = model.observed_batch(model.dataset.test)
        y = test[label].argmax(1)
        chunks = []
        for start in range(0, len(y), 1000):
            part = {k: t[start : start + 1000] for k, t in model.dataset.test.items()}
            chunks.append(model.generate(len(part[fy]), var, part))
        generated = torch.cat(chunks)
        fake = (nearest_labels(train_x, train_y, generated) == y).float().mean()
        real = (nearest_labels(train_x, train_y, test[var]) == y).float().mean()
        return {"cond_accuracy": float(fake), "cond_accuracy_real": float(real)}
