"""The two sides of an adversarial link as terms, and the `gan` family's defaults.

Options of the terms (`{term: adversarial.g, options: {...}}`):

- `importance_weighted` (G side): Hu et al. 2018's importance-weighted GAN. With a
  discriminator D = sigmoid(logit) that reads as q(y = real | x), the generator's loss of each
  fake sample is weighted by w_i = D(x_i) / (1 - D(x_i)) = exp(logit_i), normalised over the
  batch (a softmax of the logits) and detached, so it is a weighting of the gradient only.
- `reconstructions` (both sides): the fake side is also judged on reconstructions, the fake
  variables regenerated from the q-trace (x~ = decoder(q.z)), as in VAE/GAN (Larsen et al.
  2016). Each loss is the mean of its value on the generated and on the reconstructed fakes.

A link with `options: {identify: c}` (MAD-GAN, Ghosh et al. 2018; an option of the objectives
`nonsaturating` and `minimax`) has a discriminator with 1 + k logits:
class 0 is `real`, class 1 + i is `made with c = i` (generator i). Its cross-entropy splits
exactly into the two-class loss on the log-odds of `real`, s = logit_0 - logsumexp(logit_1..k)
(D(real) = sigmoid(s)), plus the cross-entropy of telling the generators apart on the fake side:

    D: -log softmax_0(D(r)) - log softmax_{1+c}(D(f)) = [softplus(-s_r) + softplus(s_f)] + CE_k(D(f)_{1..k}, c)

so the objective (`nonsaturating`, `minimax`) acts on s, and the generators' loss is the
objective's G-loss on s (non-saturating: -log softmax_0(D(f))).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from unigen.api.contexts import EdgeInfo, GraphView, StepContext
from unigen.api.kinds import Bound, Family, Objective, Options, Site, Term, TermError, merge_defaults

from .health import sample_diversity
from .objectives import identified, packed, r1_penalty


def link_objective(site: Site, e: EdgeInfo) -> tuple[Objective, Any]:
    """The objective of adversarial link `e` and its validated options, read when a term binds."""
    name = e.objective or ""
    options, _ = site.registry.options("objectives", name, e.options, e.path + ("options",))
    return site.registry.get("objectives", name), options


def _side(ctx: StepContext, refs: tuple[tuple[str, str], ...]) -> list[torch.Tensor]:
    return [ctx.trace(t)[v] for t, v in refs]


def _behind(graph: GraphView, refs: tuple[tuple[str, str], ...]) -> set[str]:
    out: set[str] = set()
    for t, v in refs:
        out |= graph.nets_behind(v, t)
    return out


def _show(refs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{t}.{v}" for t, v in refs)


# ------------------------------------------------------------ reconstructions

Recon = tuple[tuple[str, "EdgeInfo | None"], ...]  # per fake item: (variable, generative edge or None: taken from the q-trace)


def recon_plan(graph: GraphView, e: EdgeInfo) -> Recon:
    """How each fake item of link `e` is reconstructed from the q-trace: a variable with a
    generative edge whose parents the q-trace supplies (one of them inferred) is regenerated
    by that edge; any other variable is the q-trace's own value (a label in a joint link)."""
    plan: list[tuple[str, EdgeInfo | None]] = []
    for _, v in e.fake:
        gen = graph.into(v, "generative")
        sources = [graph.q_source(p) for p in gen.parents] if gen is not None else []
        if gen is not None and "none" not in sources and "edge" in sources:
            plan.append((v, gen))
        elif graph.q_source(v) != "none":
            plan.append((v, None))
        else:
            raise TermError(
                f"`reconstructions` judges the fake side's variables regenerated from the q-trace, but `{v}` has neither a generative edge whose parents the q-trace infers nor a value in the q-trace.",
                f"add an inference edge into the parents of `{v}`'s generative edge (e.g. `{{inference: {v} -> z, net: encoder, dist: normal}}`), or drop `reconstructions`.",
            )
    if all(gen is None for _, gen in plan):
        raise TermError(
            f"`reconstructions` on link `{e.name}`: no fake variable ({_show(e.fake)}) is generated from latents the q-trace infers, so there is nothing to reconstruct.",
            "add an inference edge into the latents of the fake side's generative edge, or drop `reconstructions`.",
        )
    return tuple(plan)


def _recon_side(ctx: StepContext, plan: Recon) -> list[torch.Tensor]:
    out = []
    q = ctx.q
    for v, gen in plan:
        if gen is None:
            out.append(q[v])
            continue
        dist = q.cond(gen)
        out.append(dist.rsample() if ctx.model.reparam[gen.name] else dist.sample())
    return out


def _recon_behind(graph: GraphView, plan: Recon) -> set[str]:
    out: set[str] = set()
    for v, gen in plan:
        if gen is None:
            out |= graph.nets_behind(v, "q")
        elif gen.name not in graph.no_gradient:
            out |= graph.nets_of(gen)
            for p in gen.parents:
                out |= graph.nets_behind(p, "q")
    return out


def _show_recon(plan: Recon) -> str:
    return ", ".join(f"{v}~ = {gen.net}({', '.join('q.' + p for p in gen.parents)})" if gen is not None else f"q.{v}" for v, gen in plan)


# ------------------------------------------------------- importance weights

# Objectives whose discriminator output is a probability D = sigmoid(logit) of `real`, so that
# D / (1 - D) = exp(logit) estimates the density ratio p_data(x) / p_g(x). Another plugin's
# objective joins them by defining `log_density_ratio(logits) -> tensor`.
PROBABILITY_OBJECTIVES = frozenset({"nonsaturating", "minimax"})


def _log_ratio(objective: Any, name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    custom = getattr(objective, "log_density_ratio", None)
    if callable(custom):
        return custom  # type: ignore[no-any-return]
    return (lambda logits: logits) if name in PROBABILITY_OBJECTIVES else None


def per_sample(fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """The loss of each row: `fn` (a batch mean) applied to one-row batches, vectorised."""
    return torch.func.vmap(lambda row: fn(row.unsqueeze(0)))(logits)


def iw_mean(losses: torch.Tensor, log_w: torch.Tensor) -> torch.Tensor:
    """sum_i w~_i * loss_i with w~ = softmax(log w) over the batch, detached."""
    w = torch.softmax(log_w.detach().reshape(len(log_w), -1).sum(1), 0)
    return (w * losses.reshape(len(losses))).sum()


# --------------------------------------------------------------- MAD-GAN

def real_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """The log-odds of `real` among 1 + k classes, logit_0 - logsumexp(logit_1..k), as (n, 1)."""
    return logits[:, :1] - torch.logsumexp(logits[:, 1:], dim=1, keepdim=True)


def identify_check(e: EdgeInfo, options: Any, reconstructions: bool) -> str | None:
    """The categorical latent a link identifies (`options: {identify: c}`), after checking the
    link's other settings allow it; None when the link identifies nothing."""
    c = identified(options)
    if c is None:
        return None
    pack = getattr(options, "pack", 1)
    if pack != 1:
        raise TermError(
            f"link `{e.name}` identifies `{c}` and packs samples (`pack: {pack}`): a pack mixes samples of several generators, so it has no single one to tell.",
            "remove `pack` or `identify`.",
        )
    if reconstructions:
        raise TermError(
            f"link `{e.name}` identifies `{c}` and also judges reconstructions, which no value of `{c}` produced.",
            "remove `reconstructions` or `identify`.",
        )
    return c


class AdvDOptions(Options):
    reconstructions: bool = Field(False, description="also judge reconstructions (the fake variables regenerated from the q-trace, x~ = decoder(q.z)) as fake, as in VAE/GAN; the loss is the mean of its values on generated and reconstructed fakes")


class AdvGOptions(AdvDOptions):
    importance_weighted: bool = Field(False, description="importance-weighted GAN (Hu et al. 2018): weight each fake sample's loss by D/(1-D) = exp(logit), normalised over the batch and detached (objectives `nonsaturating`, `minimax`)")


class AdversarialD(Term):
    target = "adversarial"
    Options = AdvDOptions
    doc = "discriminator side of an adversarial link: tell the real side from the fake side (optionally also from reconstructions)"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        net = e.net_ref
        recon = recon_plan(site.graph, e) if site.options is not None and site.options.reconstructions else None
        objective, opts = link_objective(site, e)
        ident = identify_check(e, opts, recon is not None)

        def loss(ctx: StepContext) -> torch.Tensor:
            objective.prepare(ctx.net(net), opts)
            d = packed(ctx.net(net), opts)
            real = _side(ctx, e.real)
            gamma = getattr(opts, "r1", 0.0)
            if gamma:
                # R1 differentiates D(real) with respect to the real inputs; one forward serves both.
                real = [r.detach().requires_grad_(True) for r in real]
            real_logits = d(*real)
            fake = _side(ctx, e.fake)
            fake_logits = d(*fake)
            told = None
            if ident is not None:  # MAD-GAN: which generator, then real vs fake on the log-odds
                told = F.cross_entropy(fake_logits[:, 1:], ctx.p[ident].argmax(-1))
                real_logits, fake_logits = real_log_odds(real_logits), real_log_odds(fake_logits)
            loss = objective.d_loss(real_logits, fake_logits, opts)
            if told is not None:
                loss = loss + told
            if recon is not None:
                loss = 0.5 * (loss + objective.d_loss(real_logits, d(*_recon_side(ctx, recon)), opts))
            penalty = objective.d_penalty(d, real, fake, opts)
            if penalty is not None:
                loss = loss + penalty
            return loss + r1_penalty(real_logits, real, gamma) if gamma else loss

        traces = frozenset(t for t, _ in e.real + e.fake) | (frozenset("q") if recon else frozenset())
        reaches = site.graph.nets_of(e) | _behind(site.graph, e.real) | _behind(site.graph, e.fake) | (_recon_behind(site.graph, recon) if recon else set())
        fakes = f"fake ({_show(e.fake)})" + (f" and reconstructions ({_show_recon(recon)}), averaged" if recon else "")
        told = f" on the log-odds of real among 1 + k classes, + CE telling which `{ident}` made each fake" if ident else ""
        return Bound(loss, f"{e.objective} D-loss of {net}: real ({_show(e.real)}) vs {fakes}{told}", traces | (frozenset("p") if ident else frozenset()), frozenset(reaches), health=_collapse_check(site, e))


# A D-loss within this fraction of the way from its floor (D wins outright) to its value at
# chance (D outputs 0 on both sides) is a discriminator that has collapsed the game.
COLLAPSE_FRACTION = 0.01


def _collapse_check(site: Site, e: EdgeInfo) -> Callable[[torch.Tensor], str | None] | None:
    """The health check of a D-loss: the objective says where its loss bottoms out
    (`d_loss_min`), and its value at chance is computed once here."""
    if not site.registry.has("objectives", e.objective or ""):
        return None
    objective = site.registry.get("objectives", e.objective or "")
    floor = getattr(objective, "d_loss_min", None)
    options, problems = site.registry.options("objectives", e.objective or "", e.options, e.path)
    if floor is None or problems:
        return None
    try:
        with torch.no_grad():
            zeros = torch.zeros(2, 1)
            chance = float(objective.d_loss(zeros, zeros, options))
    except Exception:  # an objective that cannot be evaluated on a dummy batch goes unjudged
        return None
    if not math.isfinite(chance) or chance <= floor:
        return None
    below = floor + COLLAPSE_FRACTION * (chance - floor)

    def health(value: torch.Tensor) -> str | None:
        v = float(value)
        if not math.isfinite(v) or v >= below:
            return None
        return (
            f"the discriminator `{e.net}` tells real ({_show(e.real)}) from fake ({_show(e.fake)}) almost perfectly: its {e.objective} loss is {v:.3g}, "
            f"below {below:.3g} (it is {chance:.3g} at chance, {floor:g} when it wins outright), so the generator side gets little gradient (discriminator collapse); "
            f"expected the two sides to stay close. Hint: lower `{e.net}`'s learning rate or raise the generator's, or add a gradient penalty (`options: {{r1: 1.0}}` on edge `{e.name}`)."
        )

    return health


class AdversarialG(Term):
    target = "adversarial"
    Options = AdvGOptions
    doc = "generator side of an adversarial link: make the fake side pass as real (and, if trainable, the real side as fake); optionally importance weighted, optionally on reconstructions too"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        net = e.net_ref
        o = site.options if site.options is not None else AdvGOptions()
        real_moves = bool(_behind(site.graph, e.real))
        recon = recon_plan(site.graph, e) if o.reconstructions else None
        objective, opts = link_objective(site, e)
        ident = identify_check(e, opts, recon is not None)
        log_ratio = None
        if o.importance_weighted:
            log_ratio = _log_ratio(objective, e.objective or "")
            if log_ratio is None:
                raise TermError(
                    f"`importance_weighted` weights each fake sample by D/(1-D), the density ratio a probability discriminator estimates, but objective `{e.objective}` of link `{e.name}` does not read its output as a probability.",
                    "use `objective: nonsaturating` (or `minimax`) on the link, or drop `importance_weighted`.",
                )

        def g_side(ctx: StepContext, d: torch.nn.Module, fake_values: list[torch.Tensor], real_values: list[torch.Tensor] | None) -> torch.Tensor:
            fake = d(*fake_values)
            real = d(*real_values) if real_values is not None else None
            if ident is not None:
                fake, real = real_log_odds(fake), (real_log_odds(real) if real is not None else None)
            if log_ratio is None:
                return objective.g_loss(fake, opts, real=real)
            # Each fake sample's loss, weighted by its normalised density ratio D/(1-D); a real
            # sample that moves (labels swapped) plays the fake role, weighted by (1-D)/D.
            loss = iw_mean(per_sample(lambda f: objective.g_loss(f, opts), fake), log_ratio(fake))
            if real is not None:
                both = torch.func.vmap(lambda f, r: objective.g_loss(f.unsqueeze(0), opts, real=r.unsqueeze(0)) - objective.g_loss(f.unsqueeze(0), opts))(fake, real)
                loss = loss + iw_mean(both, -log_ratio(real))
            return loss

        def loss(ctx: StepContext) -> torch.Tensor:
            objective.prepare(ctx.net(net), opts)
            d = packed(ctx.net(net), opts)
            real_values = _side(ctx, e.real) if real_moves else None
            out = g_side(ctx, d, _side(ctx, e.fake), real_values)
            if recon is not None:
                out = 0.5 * (out + g_side(ctx, d, _recon_side(ctx, recon), real_values))
            return out

        traces = frozenset(t for t, _ in e.fake + (e.real if real_moves else ())) | (frozenset("q") if recon else frozenset())
        reaches = site.graph.nets_of(e) | _behind(site.graph, e.fake) | (_behind(site.graph, e.real) if real_moves else set()) | (_recon_behind(site.graph, recon) if recon else set())
        sides = f"fake ({_show(e.fake)})" + (f" and reconstructions ({_show_recon(recon)}), averaged" if recon else "") + (f" and real ({_show(e.real)}) with labels swapped" if real_moves else "")
        weighted = ", each sample weighted by w = D/(1-D) normalised over the batch (detached)" if log_ratio is not None else ""
        told = " on the log-odds of real among 1 + k classes" if ident else ""
        return Bound(loss, f"{e.objective} G-loss through {net}: {sides}{weighted}{told}", traces, frozenset(reaches), monitor=sample_diversity)


class GANFamily(Family):
    doc = "generative adversarial network on the 2-D ring: z ~ N(0, I), x = generator(z), a discriminator on x"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "ring2d"},
            "variables": {"x": {"observed": True, "shape": [2]}, "z": {"prior": "normal", "shape": [16]}},
            "networks": {
                "generator": {"arch": "mlp", "hidden": [128, 128]},
                "discriminator": {"arch": "mlp", "hidden": [128, 128]},
            },
            "edges": [
                {"generative": "z -> x", "net": "generator", "dist": "deterministic"},
                {"adversarial": "x", "net": "discriminator", "objective": "nonsaturating"},
            ],
            "phases": [
                {"name": "discriminator", "update": ["discriminator"], "terms": ["adversarial.d"]},
                {"name": "generator", "update": ["generator"], "terms": ["adversarial.g"]},
            ],
        }
        return merge_defaults(defaults, doc)
