"""`kl`: KL(q(z|x) || p(z)) of one inference edge; `feature_recon`: reconstruction measured in
an intermediate layer of a network (a Gaussian with identity covariance in its features)."""

from __future__ import annotations

import torch
from pydantic import Field
from unigen_vae.terms import kl_to_prior

from unigen.api.contexts import GraphView, StepContext
from unigen.api.kinds import Bound, Options, Site, Term, TermError


def _sum_per_example(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1) if t.dim() > 1 else t


class KL(Term):
    target = "inference"
    doc = "KL(q(z|x) || p(z)) of an inference edge on the q-trace, p(z) the prior or the generative edge into z (closed form where known, else one-sample Monte Carlo)"

    def bind(self, site: Site) -> Bound:
        graph, e = site.graph, site.edge
        assert e is not None and e.child is not None
        z = e.child
        if graph.variables[z].observed:
            raise TermError(f"`{z}` is observed: its q-trace value is data, so q({z}|{','.join(e.parents)}) has no KL to a prior.", "attach `kl` to an inference edge into a latent variable.")
        if not site.registry.get("distributions", e.dist or "").has_density:
            raise TermError(f"inference edge `{e.name}` is `{e.dist}` and has no density, so KL(q({z}|.) || p({z})) is undefined.", f"give `{e.name}` a density, e.g. `dist: normal`.")
        gen = graph.into(z, "generative")
        if gen is None and not graph.variables[z].prior:
            raise TermError(f"`{z}` has neither a prior nor a generative edge, so p({z}) is undefined.", f"add `prior: normal` to `{z}`.")
        if gen is not None and not site.registry.get("distributions", gen.dist or "").has_density:
            raise TermError(f"generative edge `{gen.name}` into `{z}` has no density.", "give it `dist: normal`.")

        def loss(ctx: StepContext) -> torch.Tensor:
            q = ctx.q
            post = q.cond(e)
            prior = q.prior(z) if gen is None else q.cond(gen)
            return kl_to_prior(post, prior, lambda: q[z]).mean()

        reaches = graph.nets_of(e) | (graph.nets_of(gen) if gen is not None else set())
        for p in e.parents:
            reaches |= graph.nets_behind(p, "q")
        given = f"|{','.join(gen.parents)}" if gen is not None else ""
        return Bound(loss, f"KL(q({z}|{','.join(e.parents)}) || p({z}{given}))", frozenset("q"), frozenset(reaches))


class FeatureReconOptions(Options):
    net: str = Field(description="the network in whose features the reconstruction is measured (e.g. the discriminator); its architecture must expose intermediate layers (`mlp` does)")
    layer: int = Field(1, ge=1, description="which hidden layer's activations (1 = the first)")


def _inputs_of(graph: GraphView, net: str) -> list[tuple[int, ...]] | None:
    for e in graph.edges:
        if e.net == net:
            return [graph.shape(v) for _, v in e.real] if e.kind == "adversarial" else [graph.shape(p) for p in e.parents]
    return None


class FeatureRecon(Term):
    target = "generative"
    Options = FeatureReconOptions
    doc = "reconstruction in a network's feature space (VAE/GAN's Dis_l likelihood): E_q 1/2 ||f_l(x) - f_l(x~)||^2, x~ the generative edge's mean at the q-trace's parents"

    def bind(self, site: Site) -> Bound:
        graph, e, o = site.graph, site.edge, site.options
        assert e is not None and e.child is not None
        x = e.child
        for v in e.parents + (x,):
            if graph.q_source(v) == "none":
                raise TermError(f"`{v}` is latent and no inference edge infers it, so the q-trace has nothing to reconstruct from.", f"add an inference edge into `{v}`, e.g. `{{inference: {x} -> {v}, net: encoder, dist: normal}}`.")
        spec_net = graph.spec.networks.get(o.net)
        if spec_net is None:
            raise TermError(f"`net: {o.net}` names no network.", "name one of: " + ", ".join(f"`{n}`" for n in graph.spec.networks) + ".")
        inputs = _inputs_of(graph, o.net)
        if inputs != [graph.shape(x)]:
            shown = ", ".join(str(list(s)) for s in inputs) if inputs else "nothing"
            raise TermError(f"network `{o.net}` reads {shown}, but its features are compared on `{x}` alone ({list(graph.shape(x))}).", f"name a network whose only input is `{x}`, e.g. the discriminator of an adversarial link on `{x}`.")
        arch = site.registry.get("networks", spec_net.arch)
        arch_options, problems = site.registry.options("networks", spec_net.arch, spec_net.options, ("networks", o.net))
        layers = arch.feature_layers(arch_options) if not problems and hasattr(arch, "feature_layers") else []
        if not layers:
            raise TermError(f"network `{o.net}` ({spec_net.arch}) exposes no intermediate layers.", "use an architecture with `feature_layers` (e.g. `mlp` with `hidden: [...]`).")
        if o.layer > len(layers):
            raise TermError(f"`layer: {o.layer}`, but network `{o.net}` has {len(layers)} hidden layer{'s' if len(layers) != 1 else ''}.", f"choose a layer from 1 to {len(layers)}.")
        net, layer = o.net, o.layer

        def loss(ctx: StepContext) -> torch.Tensor:
            module = ctx.net(net)
            q = ctx.q
            cond = q.cond(e)
            try:
                x_tilde = cond.mean
            except NotImplementedError:
                x_tilde = cond.rsample() if ctx.model.reparam[e.name] else cond.sample()
            diff = module.features(q[x], layer=layer) - module.features(x_tilde, layer=layer)
            return 0.5 * _sum_per_example(diff.pow(2)).mean()

        reaches = graph.nets_of(e) | ({net} if spec_net.trainable else set())
        for p in e.parents:
            reaches |= graph.nets_behind(p, "q")
        pa = ",".join(e.parents)
        formula = f"E_q 1/2 ||{net}_{layer}({x}) - {net}_{layer}({x}~)||^2, {x}~ = mean({x}|{pa}) at q.{pa}"
        return Bound(loss, formula, frozenset("q"), frozenset(reaches))
