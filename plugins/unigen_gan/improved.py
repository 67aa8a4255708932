"""Terms from "Improved techniques for training GANs" (Salimans et al. 2016).

- `feature_matching` (on an adversarial link): the generator side matches the mean of the
  discriminator's last hidden features on the real side, ||E f(real) - E f(fake)||^2. The
  network must have a `features(*inputs)` method (`mlp` and the convolutional ones do).
- `historical_average` (on a network with `ema:`): weight * ||theta - theta_avg||^2, the
  distance of the network's parameters from their running (exponential) average.

One-sided label smoothing is the `real_label` option of the log-loss objectives; virtual batch
norm (`norm: vbn`), minibatch discrimination (`minibatch_features`) and spectral norm
(`spectral_norm`) are options of the convolutional networks.
"""

from __future__ import annotations

import torch
from pydantic import Field

from unigen.api.contexts import EdgeInfo, StepContext
from unigen.api.kinds import Bound, Options, Site, Term, TermError

from .objectives import packed
from .terms import _behind, _show, _side, link_objective


def features(net: torch.nn.Module, inputs: list[torch.Tensor], name: str) -> torch.Tensor:
    method = getattr(net, "features", None)
    if method is None:
        raise TypeError(f"network `{name}` ({type(net).__name__}) has no `features(*inputs)` method, which feature matching needs; use `mlp` or a convolutional network")
    return method(*inputs)


class FeatureMatching(Term):
    target = "adversarial"
    doc = "generator side: ||E f(real) - E f(fake)||^2 on the discriminator's last hidden features (Salimans et al. 2016)"

    def bind(self, site: Site) -> Bound:
        e: EdgeInfo = site.edge  # type: ignore[assignment]
        net = e.net_ref
        _, opts = link_objective(site, e)

        def loss(ctx: StepContext) -> torch.Tensor:
            d = packed(ctx.net(net), opts)
            real = features(d, [r.detach() for r in _side(ctx, e.real)], net).mean(0)
            fake = features(d, _side(ctx, e.fake), net).mean(0)
            return (real - fake).pow(2).sum()

        traces = frozenset(t for t, _ in e.real + e.fake)
        reaches = site.graph.nets_of(e) | _behind(site.graph, e.fake)
        return Bound(loss, f"||E f(real) - E f(fake)||^2, f = features of {net}: real ({_show(e.real)}) vs fake ({_show(e.fake)})", traces, frozenset(reaches))


class HistoryOptions(Options):
    net: str = Field(description="the network whose parameters are held near their running average; it needs `ema:`")


class HistoricalAverage(Term):
    target = None
    Options = HistoryOptions
    doc = "||theta - theta_avg||^2 for a network with `ema:` (historical averaging, Salimans et al. 2016, with an exponential average)"

    def bind(self, site: Site) -> Bound:
        name = site.options.net
        spec = site.graph.spec
        if name not in spec.networks:
            raise TermError(f"historical_average names network `{name}`, which the spec does not have", f"use one of: {', '.join(spec.networks)}.")
        if not spec.networks[name].ema:
            raise TermError(f"historical_average on `{name}` needs its running average, but `{name}` has no `ema:`", f"add `ema: 0.99` to network `{name}`.")

        def loss(ctx: StepContext) -> torch.Tensor:
            live = ctx.net(name).parameters()
            avg = ctx.model.averages.copies[name].parameters()
            return sum((p - a).pow(2).sum() for p, a in zip(live, avg))  # type: ignore[return-value]

        return Bound(loss, f"||theta_{name} - ema(theta_{name})||^2", frozenset(), frozenset({name}))
