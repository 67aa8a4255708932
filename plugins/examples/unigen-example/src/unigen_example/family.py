"""The `rae` family: a regularised autoencoder (Ghosh et al. 2020) on 8x8 digits.

In the unifying view it is the wake phase with a deterministic q(z | x) and, instead of the
KL to a prior, an L2 penalty on the code.
"""

from __future__ import annotations

from typing import Any

from unigen.api.kinds import Family, merge_defaults


class RAEFamily(Family):
    doc = "regularised autoencoder on 8x8 digits: z = encoder(x), x ~ Bernoulli(decoder(z)), reconstruction + code_l2; resmlp networks"

    def complete(self, doc: dict[str, Any]) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "data": {"source": "digits"},
            "variables": {"x": {"observed": True, "shape": [64]}, "z": {"prior": "normal", "shape": [8]}},
            "networks": {
                "encoder": {"arch": "resmlp", "width": 128, "blocks": 2},
                "decoder": {"arch": "resmlp", "width": 128, "blocks": 2},
            },
            "edges": [
                {"generative": "z -> x", "net": "decoder", "dist": "bernoulli"},
                {"inference": "x -> z", "net": "encoder", "dist": "deterministic"},
            ],
            "phases": [{"name": "rae", "update": ["encoder", "decoder"], "terms": ["recon", {"term": "code_l2", "weight": 0.05}]}],
        }
        return merge_defaults(defaults, doc)
