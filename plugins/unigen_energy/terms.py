"""Contrastive divergence as a term: the energy of the data side minus the energy of the model's
own chain,

    L = E_q[E(v, h)] - E_m[E(v, h)],

with the q-trace's observed values and hidden means (mean-field, exact for an RBM) and the
sampler trace m's chain, both detached. Its gradient dL/dtheta = E_q[dE/dtheta] - E_m[dE/dtheta]
is the CD-k update (Hinton 2002) when m restarts at the data, and the persistent-CD update
(Tieleman 2008) when the chain persists: for an RBM's weights, -(<v h^T>_data - <v h^T>_model).

In the unifying view this is the adversarial move with the critic equal to the negative free
energy and the 'generator' being the model's own chain: the energy is pushed down on the data
and up on what the chain produces.
"""

from __future__ import annotations

import torch

from unigen.api.contexts import StepContext
from unigen.api.kinds import Bound, Site, Term, TermError


class ContrastiveDivergence(Term):
    target = None  # the energy of every undirected factor at once: a DBM's term binds to no single factor
    doc = "energy of the data (q-trace, hidden means) minus energy of the model's chain (m-trace): the CD / PCD update"

    def bind(self, site: Site) -> Bound:
        graph = site.graph
        edges = graph.of_kind("undirected")
        if not edges:
            raise TermError("the graph has no undirected factor, so there is no energy to contrast.", "add e.g. `{undirected: [v, h], net: rbm}`.")
        names = list(dict.fromkeys(v for e in edges for v in e.variables))
        if not any(graph.variables[v].observed for v in names):
            raise TermError(f"no variable of the undirected factors ({', '.join(f'`{v}`' for v in names)}) is observed, so the data side has nothing to clamp.", "mark the visible variable `observed: true`.")
        nets: set[str] = set()
        for e in edges:
            nets |= graph.nets_of(e)
        args = ",".join(names)

        def loss(ctx: StepContext) -> torch.Tensor:
            energy = ctx.model.energy  # type: ignore[attr-defined]
            q, m = ctx.q, ctx.trace("m")
            positive = energy.energy({v: q[v].detach() for v in energy.variables})
            negative = energy.energy({v: m[v].detach() for v in energy.variables})
            return positive.mean() - negative.mean()

        return Bound(loss, f"E_q[E({args})] - E_m[E({args})]", frozenset({"q", "m"}), frozenset(nets))
