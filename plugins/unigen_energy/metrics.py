"""The test negative log-likelihood of a binary energy model, in nats: exactly where the smaller
colour class can be listed, and by annealed importance sampling (forward and reverse).

-log p(v) = -log p*(v) + log Z, with log p*(v) = log sum_h exp(-E(v, h)). Both sums are over a
float64 copy of the model's undirected networks. Where log p*(v) cannot be listed (a DBM's wide
hidden layers), the mean-field bound log p*(v) >= -E(v, mu) + H(mu) stands in for it, as in
Salakhutdinov & Hinton (2009): with the AIS log Z it is an upper bound on -log p(v) in expectation.
"""

from __future__ import annotations

import torch
from pydantic import Field

from unigen.api.contexts import ModelView
from unigen.api.kinds import Metric, Options

from .factors import Factor, Factors, colour_classes, undirected_factors
from .partition import Annealing, base_logits, exact_log_unnormalised, exact_log_z, free_units, smaller_first


def unsupported(model: ModelView) -> str | None:
    """Why the exact and AIS estimates do not apply to `model` (None: they do): they need
    pairwise undirected factors of multilinear networks (`rbm`) forming a bipartite graph,
    and a model that is nothing but them (no directed edge or prior on their variables)."""
    graph = model.program.graph
    edges = graph.of_kind("undirected")
    if not edges:
        return "the model has no undirected factor"
    names = {v for e in edges for v in e.variables}
    for e in edges:
        node = model.program.networks.get(e.net.split(".")[0])
        if node is None or not getattr(node.kind, "multilinear", False):
            return f"network `{e.net}` of `{e.name}` is not multilinear (an `rbm`)"
    for e in graph.edges:
        if e.kind == "generative" and set(e.variables) & names:
            return f"generative edge `{e.name}` touches the undirected part"
    for v in names:
        if getattr(graph.variables[v], "prior", None):
            return f"`{v}` has a prior besides its undirected factors"
    try:
        view = _structure(model)
        colour_classes(view)
    except (ValueError, KeyError) as exc:
        return str(exc)
    if not view.observed or not model.dataset.test:
        return "no observed variable with test data"
    return None


def _structure(model: ModelView) -> Factors:
    """The factors' variables without copying networks (for checks)."""
    graph = model.program.graph
    edges = graph.of_kind("undirected")
    names = {v for e in edges for v in e.variables}
    return Factors([Factor(None, tuple(e.variables)) for e in edges], {v: graph.shape(v) for v in names}, [v for v in names if graph.variables[v].observed])  # type: ignore[arg-type]


def _rows(model: ModelView, split: dict[str, torch.Tensor], view: Factors) -> dict[str, torch.Tensor]:
    batch = model.observed_batch(split)
    return {v: batch[v].to(torch.float64) for v in view.observed}


class ExactOptions(Options):
    max_units: int = Field(22, ge=0, le=30, description="most units of the class enumerated (2^max_units states)")
    chunk: int = Field(65536, ge=1, description="rows evaluated at once")


class ExactNLL(Metric):
    doc = "exact test negative log-likelihood of a binary RBM or DBM (enumerates the smaller colour class; nats, lower is better)"
    higher_is_better = False
    Options = ExactOptions

    def applies(self, model: ModelView) -> bool:
        return self.refusal(model) is None

    def refusal(self, model: ModelView) -> str | None:
        """Why the exact sums cannot be done for `model` (None: they can)."""
        why = unsupported(model)
        if why is not None:
            return why
        o = self.options or ExactOptions()
        view = _structure(model)
        z_units, x_units = free_units(view, colour_classes(view), view.observed)
        if max(z_units, x_units) > o.max_units:
            return f"the exact sums would list 2^{max(z_units, x_units)} states, beyond max_units={o.max_units} (raise it with `exact_nll.max_units=...`, or use `ais`)"
        return None

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        why = self.refusal(model)
        if why is not None:  # a metric named explicitly is computed whether it applies or not
            raise ValueError(f"exact_nll does not apply: {why}")
        o = self.options or ExactOptions()
        view = undirected_factors(model, torch.float64)
        classes = colour_classes(view)
        log_z = exact_log_z(view, classes, torch.float64, model.device, o.chunk)
        out = {"log_z_exact": log_z}
        for name, split in (("test", model.dataset.test), ("train", model.dataset.train)):
            if split:
                lp = exact_log_unnormalised(view, classes, _rows(model, split, view), torch.float64, o.chunk)
                out[f"{name}_nll_exact"] = log_z - float(lp.mean())
        return out


class AISOptions(Options):
    chains: int = Field(100, ge=1, description="annealing runs (importance samples)")
    betas: int = Field(10000, ge=2, description="intermediate distributions, equally spaced in beta from 0 to 1")
    seed: int = Field(0, description="seed of the metric's own random stream")
    model_steps: int = Field(1000, ge=0, description="Gibbs steps from training rows that give reverse AIS its model samples")
    max_units: int = Field(22, ge=0, le=30, description="most units enumerated for a test row's log p*(v); beyond it the mean-field bound alone is reported")
    mean_field: int = Field(30, ge=1, description="mean-field sweeps for the bound -E(v, mu) + H(mu) on log p*(v)")
    rows: int = Field(1000, ge=1, description="test rows evaluated at once by the mean-field bound")


class AISNLL(Metric):
    doc = "test negative log-likelihood with log Z by annealed importance sampling (low in expectation) and reverse AIS (high), with log p*(v) listed or (`_mf`) its mean-field bound; nats"
    higher_is_better = False
    during_training = False
    Options = AISOptions

    def applies(self, model: ModelView) -> bool:
        return unsupported(model) is None

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"ais does not apply: {why}")
        o = self.options or AISOptions()
        view = undirected_factors(model, torch.float64)
        classes = colour_classes(view)
        state, summed = smaller_first(view, *classes)
        train = _rows(model, model.dataset.train, view)
        rows = len(next(iter(train.values())))
        base = base_logits(view, {v: t.mean(0) for v, t in train.items()}, rows, torch.float64, model.device)
        generator = torch.Generator(model.device).manual_seed(o.seed)
        anneal = Annealing(view, state, summed, base, generator)
        betas = torch.linspace(0, 1, o.betas, dtype=torch.float64)
        log_z, logw = anneal.forward(o.chains, betas)
        start = anneal.model_samples(anneal.start_from(train, o.chains), o.model_steps)
        log_z_r, _ = anneal.reverse(start, betas)
        w = torch.softmax(logw, 0)
        out = {"log_z_ais": log_z, "log_z_rais": log_z_r, "ais_ess": float(1 / (w * w).sum())}
        test = _rows(model, model.dataset.test, view)
        n = len(next(iter(test.values())))
        bound = sum(float(mean_field_bound(view, {v: t[i : i + o.rows] for v, t in test.items()}, o.mean_field).sum()) for i in range(0, n, o.rows)) / n
        out.update({"test_nll_ais_mf": log_z - bound, "test_nll_rais_mf": log_z_r - bound})
        if free_units(view, classes, view.observed)[1] <= o.max_units:
            lp = float(exact_log_unnormalised(view, classes, test).mean())
            out.update({"test_nll_ais": log_z - lp, "test_nll_rais": log_z_r - lp})
        return out


def mean_field_bound(view: Factors, data: dict[str, torch.Tensor], sweeps: int) -> torch.Tensor:
    """-E(v, mu) + sum_u H(mu_u) per row of `data` (the observed variables): a lower bound on
    log p*(v) for the factorised q(h) = prod_u Bernoulli(mu_u), with mu from `sweeps` mean-field
    sweeps from 0. E_q[E] = E(v, mu) exactly because the factors are pairwise between distinct
    variables and each network is multilinear; for an RBM one sweep is the exact posterior and
    the bound is log p*(v) itself."""
    first = next(iter(data.values()))
    hidden = [v for v in view.variables if v not in data]
    mu = {**data, **{v: torch.zeros((len(first), *view.variables[v]), dtype=first.dtype, device=first.device) for v in hidden}}
    for _ in range(sweeps):
        for v in hidden:
            mu[v] = torch.sigmoid(view.field(v, mu))
    entropy = sum((-(torch.special.xlogy(mu[v], mu[v]) + torch.special.xlogy(1 - mu[v], 1 - mu[v]))).flatten(1).sum(1) for v in hidden)
    with torch.no_grad():
        return -view.energy(mu) + entropy


def bernoulli_baseline(train: torch.Tensor, test: torch.Tensor) -> float:
    """Test NLL (nats) of independent Bernoulli units at the training means, smoothed as
    (sum + 1) / (rows + 2): the base model AIS starts from."""
    p = (train.double().sum(0) + 1) / (len(train) + 2)
    t = test.double()
    return float(-(t * p.log() + (1 - t) * torch.log1p(-p)).sum(1).mean())

