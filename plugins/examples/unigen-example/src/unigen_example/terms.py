"""`code_l2`: an L2 penalty on the code an inference edge infers, on the q-trace."""

from __future__ import annotations

import torch

from unigen.api.kinds import Bound, Options, Site, Term


class CodeL2Options(Options):
    scale: float = 1.0


class CodeL2(Term):
    """scale * E_q ||z||^2 for the child z of an inference edge: keeps a deterministic code
    near the origin, so that a Gaussian fitted to the codes afterwards samples well (RAE)."""

    target = "inference"  # attaches to an inference edge: `code_l2` or `code_l2@q_z`
    Options = CodeL2Options
    doc = "scale * E_q ||z||^2 on the code of an inference edge (regularised autoencoder)"

    def bind(self, site: Site) -> Bound:
        assert site.edge is not None and site.edge.child is not None
        var, scale = site.edge.child, site.options.scale

        def loss(ctx) -> torch.Tensor:
            return scale * ctx.q[var].flatten(1).pow(2).sum(1).mean()

        return Bound(
            loss,
            f"{scale:g} * E_q ||{var}||^2",
            traces=frozenset("q"),
            reaches=frozenset(site.graph.nets_behind(var, "q")),
        )
