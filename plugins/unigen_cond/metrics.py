"""`cond_accuracy`: the labels of generated samples, read back by 1-nearest-neighbour or by the
image metrics' locally trained classifier."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from unigen.api.contexts import GraphView, ModelView
from unigen.api.kinds import Metric, Options


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


class CondAccuracyOptions(Options):
    reader: Literal["nearest", "classifier"] = Field(
        "nearest",
        description="what reads the label of a sample back: `nearest`, the label of its nearest training image (Euclidean); `classifier`, the image metrics' classifier, trained on the training split and cached (as `quality` uses; its test accuracy is reported beside)",
    )


class CondAccuracy(Metric):
    doc = "conditional samples: accuracy of a label reader (1-nearest-neighbour on the training split, or a trained classifier) on x generated for the test split's labels, and on the real test x for reference"
    Options = CondAccuracyOptions

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
        o = self.options or CondAccuracyOptions()
        if o.reader == "classifier":
            from unigen_eval.features import feature_classifier

            ds = model.dataset
            net, acc = feature_classifier(model.program.data.source, model.program.data.options, fx, ds.train, ds.test, int(ds.train[fy].shape[1]))

            @torch.no_grad()
            def read(x: torch.Tensor) -> torch.Tensor:
                x = x.reshape(-1, *ds.train[fx].shape[1:])
                return torch.cat([net(x[i : i + 1000])[1].argmax(1) for i in range(0, len(x), 1000)])

            fake, real = (read(generated) == y).float().mean(), (read(test[var]) == y).float().mean()
            return {"cond_accuracy": float(fake), "cond_accuracy_real": float(real), "cond_reader_accuracy": acc}
        fake = (nearest_labels(train_x, train_y, generated) == y).float().mean()
        real = (nearest_labels(train_x, train_y, test[var]) == y).float().mean()
        return {"cond_accuracy": float(fake), "cond_accuracy_real": float(real)}
