"""Offline sample-quality metrics: image statistics in a classifier's feature space, and how
well an InfoGAN-style categorical code reads back the data's classes."""

from __future__ import annotations

import torch
from pydantic import Field

from unigen.api.contexts import GraphView, ModelView
from unigen.api.kinds import Metric, Options

from . import stats
from .features import feature_classifier, labels_of


def generate(model: ModelView, var: str, n: int, chunk: int = 1000) -> torch.Tensor:
    """n samples of `var`; a conditional model draws them for the test split's rows in order
    (its labels), cycling through the split when n exceeds it."""
    test = model.dataset.test
    size = min((len(v) for v in test.values()), default=0)
    out = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        if size:
            idx = torch.arange(start, start + m, device=model.device) % size
            batch = {k: v.index_select(0, idx) for k, v in test.items()}
        else:
            batch = None
        out.append(model.generate(m, var, batch))
    return torch.cat(out)


def image_target(model: ModelView) -> tuple[str, str, int] | None:
    """(variable, data field, classes) when the model generates labelled images."""
    info = model.dataset.info
    var = model.sampled_variable()
    if var is None or "image_shape" not in info or not info.get("classes"):
        return None
    field = model.fields.get(var)
    classes = int(info["classes"])
    if field is None or field not in model.dataset.train or labels_of(model.dataset.train, classes) is None or labels_of(model.dataset.test, classes) is None:
        return None
    return var, field, classes


class QualityOptions(Options):
    samples: int = Field(0, ge=0, description="generated samples scored (0: as many as the test split holds)")
    k_pr: int = Field(3, ge=1, description="neighbours of the precision/recall manifolds (Kynkaanniemi et al.: 3)")
    k_dc: int = Field(5, ge=1, description="neighbours of the density/coverage balls (Naeem et al.: 5)")


class SampleQuality(Metric):
    doc = "images: FID, KID, precision/recall, density/coverage, classifier score and class entropy in a locally trained classifier's feature space, each beside its real-vs-real floor (train vs test)"
    Options = QualityOptions
    during_training = False
    fallback = True  # a GAN on images reports its sample quality at the end without naming `metrics`

    def applies(self, model: ModelView) -> bool:
        return image_target(model) is not None

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        o = self.options or QualityOptions()
        target = image_target(model)
        assert target is not None
        var, field, classes = target
        ds = model.dataset
        net, acc = feature_classifier(model.program.data.source, model.program.data.options, field, ds.train, ds.test, classes)
        test = ds.test[field]
        n = min(o.samples or len(test), len(test), len(ds.train[field]))
        real = test[:n]
        train = ds.train[field][:n]  # the split is already shuffled: a fair subset
        fake = generate(model, var, n).reshape(real.shape)
        (f_real, l_real), (f_train, l_train), (f_fake, l_fake) = net(real), net(train), net(fake)
        out: dict[str, float] = {"feature_classifier_accuracy": acc, "quality_samples": float(n)}

        def both(name: str, fn, a_fake, a_train) -> None:  # type: ignore[no-untyped-def]
            value, floor = fn(a_fake), fn(a_train)
            if isinstance(value, tuple):
                for sub, v, f in zip(name.split("/"), value, floor):
                    out[sub], out[sub + "_floor"] = v, f
            else:
                out[name], out[name + "_floor"] = value, floor

        both("fid", lambda f: stats.fid(f_real, f), f_fake, f_train)
        both("kid", lambda f: stats.kid(f_real, f), f_fake, f_train)
        both("precision/recall", lambda f: stats.precision_recall(f_real, f, o.k_pr), f_fake, f_train)
        both("density/coverage", lambda f: stats.density_coverage(f_real, f, o.k_dc), f_fake, f_train)
        # The classifier's own statistics: the floor is the real test split (what real data scores).
        out["class_score"], out["class_score_floor"] = stats.classifier_score(l_fake.softmax(1)), stats.classifier_score(l_real.softmax(1))
        out["class_entropy"], out["class_entropy_floor"] = stats.class_entropy(l_fake.argmax(1), classes), stats.class_entropy(l_real.argmax(1), classes)
        del l_train
        return out


def code_variable(graph: GraphView, var: str) -> str | None:
    """A categorical latent code c of `var`: a root with a categorical prior, a parent of the
    generative edge into `var`, read back by an inference edge `var -> c`."""
    gen = graph.into(var, "generative")
    if gen is None:
        return None
    for c in gen.parents:
        spec_var = graph.variables[c]
        inf = graph.into(c, "inference")
        if spec_var.prior == "categorical" and graph.p_source(c) == "prior" and inf is not None and inf.parents == (var,):
            return c
    return None


def nearest_mode(x: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.reshape(len(x), -1).float(), modes.float().to(x.device)).argmin(1)


class CodeAccuracy(Metric):
    doc = "InfoGAN: accuracy of the categorical code as a classifier of the data's classes (labels, or the nearest mode of a 2-D mixture) under the best one-to-one matching of code values to classes (Hungarian)"
    during_training = False

    def _target(self, model: ModelView) -> tuple[str, str] | None:
        var = model.sampled_variable()
        if var is None or var not in model.fields:
            return None
        c = code_variable(model.program.graph, var)
        if c is None:
            return None
        info = model.dataset.info
        if "modes" in info or image_target(model) is not None:
            return var, c
        return None

    def applies(self, model: ModelView) -> bool:
        return self._target(model) is not None

    def _labels(self, model: ModelView, x: torch.Tensor) -> torch.Tensor:
        info = model.dataset.info
        if "modes" in info:
            return nearest_mode(x, info["modes"])
        target = image_target(model)
        assert target is not None
        _, field, classes = target
        ds = model.dataset
        net, _ = feature_classifier(model.program.data.source, model.program.data.options, field, ds.train, ds.test, classes)
        return net(x)[1].argmax(1)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        target = self._target(model)
        assert target is not None
        var, c = target
        graph = model.program.graph
        field = model.fields[var]
        test_x = model.dataset.test[field]
        classes = model.dataset.info.get("classes")
        true = labels_of(model.dataset.test, int(classes)) if classes else None
        if true is None:
            true = self._labels(model, test_x)
        inf = graph.into(c, "inference")
        assert inf is not None
        kind, options, event_dims = model.edge_dist[inf.name]
        inferred = kind.make(model.nets[inf.net](test_x), event_dims, options).mean.argmax(1)
        n = model.program.train.eval_samples
        trace = model.trace("p", None, n)
        code = trace[c].argmax(1)
        gen = graph.into(var, "generative")
        assert gen is not None
        try:
            x = trace.cond(gen).mean
        except NotImplementedError:
            x = trace[var]
        drawn = self._labels(model, x)
        return {
            "code_accuracy": stats.matched_accuracy(inferred, true.to(inferred.device)),
            "code_accuracy_gen": stats.matched_accuracy(code, drawn),
            "code_chance": 1.0 / int(graph.shape(c)[0]),
        }
