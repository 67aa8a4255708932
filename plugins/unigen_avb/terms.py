"""`avb`: the AVB bound, -E_q[log p(x | z)] + E_q[T(x, z)], with T an adversarial link's logit."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unigen.api.contexts import EdgeInfo, GraphView, StepContext
from unigen.api.kinds import Bound, Site, Term, TermError


def reconstructions(graph: GraphView, registry: object) -> list[EdgeInfo]:
    """The generative edges into observed variables, each with a density: -log p(x | pa)."""
    out = []
    for v, var in graph.variables.items():
        e = graph.into(v, "generative")
        if var.observed and e is not None:
            if not getattr(registry.get("distributions", e.dist), "has_density", True):  # type: ignore[attr-defined]
                raise TermError(f"generative edge `{e.name}` is `{e.dist}` and has no density, so log p({v} | {', '.join(e.parents)}) is undefined.", "give it a density, e.g. `dist: bernoulli`.")
            out.append(e)
    if not out:
        raise TermError("no generative edge leads into an observed variable, so there is nothing to reconstruct.", "add e.g. `{generative: z -> x, net: decoder, dist: bernoulli}`.")
    return out


@dataclass(frozen=True)
class AVBPlan:
    """What the AVB bound reads: the reconstructed edges, the link's real side and its network."""

    recon: list[EdgeInfo]
    real: list[str]
    net: str
    nets: frozenset[str]


def plan_avb(graph: GraphView, registry: object, link: EdgeInfo) -> AVBPlan:
    """The bound's plan over the adversarial `link`, or TermError saying what the spec lacks."""
    if any(t != "q" for t, _ in link.real):
        raise TermError(f"`avb` reads the link's real side on the q-trace, and `{link.name}` judges {', '.join(f'{t}.{v}' for t, v in link.real)} as real.", "write `real: [q.x, q.z]` and `fake: [q.x, p.z]`: q's pairs against the prior's.")
    fake_latents = [v for t, v in link.fake if t == "p" and graph.p_source(v) == "prior"]
    if not fake_latents:
        raise TermError(f"`avb` estimates KL(q || p) by the link's logit, which needs the prior's draws on the fake side; `{link.name}` judges {', '.join(f'{t}.{v}' for t, v in link.fake)} as fake.", "write `fake: [q.x, p.z]`, with z a root with a prior.")
    recon = reconstructions(graph, registry)
    reaches: set[str] = set()
    for e in recon:
        reaches |= graph.nets_of(e) | set().union(*(graph.nets_behind(p, "q") for p in e.parents))
    for _, v in link.real:
        reaches |= graph.nets_behind(v, "q")
    return AVBPlan(recon, [v for _, v in link.real], link.net_ref, frozenset(reaches))


def avb_loss(ctx: StepContext, plan: AVBPlan) -> torch.Tensor:
    """-log p(x | z) + T(x, z) per row of the q-trace: the bound's terms before the mean."""
    q = ctx.q
    rec = sum(-q.cond(e).log_prob(q[e.child]) for e in plan.recon)  # type: ignore[index]
    logit = ctx.net(plan.net)(*[q[v] for v in plan.real]).reshape(ctx.n, -1)[:, 0]
    return rec + logit  # type: ignore[no-any-return]


class AVBBound(Term):
    target = "adversarial"
    doc = "AVB's bound -E_q[log p(x|z)] + E_q[T(x,z)]: the ELBO with KL(q(z|x) || p(z)) estimated by the link's logit T on the q-side pairs (its real side); T is trained by `adversarial.d` with the prior's draws as the fake side"

    def bind(self, site: Site) -> Bound:
        link: EdgeInfo = site.edge  # type: ignore[assignment]
        plan = plan_avb(site.graph, site.registry, link)

        def loss(ctx: StepContext) -> torch.Tensor:
            return avb_loss(ctx, plan).mean()

        given = ",".join(plan.real)
        rec_text = " + ".join(f"-E_q[log p({e.child}|{','.join(e.parents)})]" for e in plan.recon)
        return Bound(loss, f"{rec_text} + E_q[T({given})]  (T = {link.net_ref}, at its optimum log q - log p)", frozenset("q"), plan.nets)
