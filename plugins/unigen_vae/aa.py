"""`aa_elbo`: the adversary-activated VAE's term on generated samples (Hu et al. 2018).

A VAE learns from data only; in the unifying view its discriminator is a perfect one that
rejects every generated sample. AA-VAE replaces it by a trained discriminator D(x) (an
adversarial link on x, trained with `adversarial.d` to tell data from generated samples) and
lets the VAE learn from its own samples too: each generated sample x ~ p(x) enters the ELBO
with the weight D(x), the discriminator's probability that x is real, so samples that pass
for data count and the others hardly do.

    aa_elbo = E_{x ~ p_theta(x)} [ D(x) * -ELBO(x) ],   D(x) = sigmoid(discriminator logit)

The weight is a constant for the VAE's update (no gradient reaches the discriminator or,
through the samples, the generator): only the bound's encoder, decoder and prior networks
learn from it. Generated samples carry every variable the p-trace draws with them (a label
a conditional VAE reads from the data, or one M2 samples from its prior), so on them a
partially observed variable is observed.

With a partially observed label y and its classifier q(y | x) (M2), a generated pair (x, y) is
a labelled example, so `label_weight` (M2's alpha / N, as on `label_nll`) adds the classifier's
fit to it under the same weight:

    aa_elbo = E_{(x, y) ~ p_theta} [ D(x) * ( -ELBO(x, y) - label_weight * log q(y | x) ) ]
"""

from __future__ import annotations

import torch
from pydantic import Field

from unigen.api.contexts import EdgeInfo, StepContext
from unigen.api.kinds import Bound, Options, Site, Term, TermError

from .terms import negative_elbo, plan_elbo, plan_nets


class AAOptions(Options):
    normalize: bool = Field(False, description="divide the weights by their mean over the batch (self-normalised importance weights)")
    label_weight: float = Field(0.0, ge=0, description="with a partially observed label y: weight of -log q(y|x) on each generated pair, which counts as a labelled example (M2's alpha / N)")


class AAELBO(Term):
    target = "adversarial"
    Options = AAOptions
    doc = "adversary-activated VAE: -ELBO on generated samples x ~ p(x), each weighted by the discriminator's D(x) (Hu et al. 2018)"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        graph = site.graph
        plan = plan_elbo(graph, site.registry)
        observed = [v for v, var in graph.variables.items() if var.observed]
        missing = [v for v in observed if graph.p_source(v) == "none"]
        if missing:
            raise TermError(f"the p-trace cannot produce {', '.join(f'`{v}`' for v in missing)}, so generated samples lack what the ELBO scores.", "give each observed variable a generative edge, a prior or data.")
        if any(t != "p" for t, _ in e.fake):
            raise TermError(f"adversarial link `{e.name}` judges {', '.join(f'{t}.{v}' for t, v in e.fake)} as fake; the weights need the discriminator's view of generated samples (p-trace).", "use a link whose fake side is the p-trace, e.g. `{adversarial: x, net: discriminator, objective: nonsaturating}`.")
        normalize = site.options.normalize
        label_weight = site.options.label_weight
        if label_weight and plan.partial is None:
            raise TermError("`label_weight` fits a classifier q(y|x) to generated labels, but no variable is partially observed (`mask`) with an inference edge.", "drop `label_weight`, or give the label `mask:` and an inference edge such as `{inference: x -> y, net: classifier, dist: categorical}` (an M2 model).")
        net = e.net_ref

        def loss(ctx: StepContext) -> torch.Tensor:
            p = ctx.p
            with torch.no_grad():
                weight = torch.sigmoid(ctx.net(net)(*[p[v] for _, v in e.fake])).reshape(-1)
                if normalize:
                    weight = weight / weight.mean().clamp(min=1e-12)
            samples = {v: p[v].detach() for v in observed}
            inner = ctx.model.context(samples, ctx.n)
            rec, kl = negative_elbo(inner, plan, 1.0)
            nelbo = rec if kl is None else rec + kl
            if label_weight:
                y, inf, _ = plan.partial  # type: ignore[misc]
                nelbo = nelbo - label_weight * inner.q.cond(inf).log_prob(samples[y])
            return (weight * nelbo).mean()

        judged = ",".join(v for _, v in e.fake)
        scale = f"D({judged})/mean D" if normalize else f"D({judged})"
        inner_text = f"-ELBO({','.join(observed)})"
        if label_weight:
            y, inf, _ = plan.partial  # type: ignore[misc]
            inner_text = f"({inner_text} - {label_weight:g} * log q({y}|{','.join(inf.parents)}))"
        fake = ", ".join(f"p.{v}" for _, v in e.fake)
        formula = f"E_p[{scale} * {inner_text}], D = sigmoid({net}({fake})) held fixed"
        return Bound(loss, formula, frozenset("p"), frozenset(plan_nets(graph, plan)))
