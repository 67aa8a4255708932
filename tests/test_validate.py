"""Structural validation: one test per rule code, each on a small variant of a shipped spec."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from conftest import ROOT

from unigen.compiler.compiler import compile_spec
from unigen.errors import Diagnostic, UnigenError, dotted
from unigen.spec.load import parse_spec

# specs/gan-ring.yaml and specs/vae-digits.yaml, with small networks.
GAN = """\
unigen: 1
name: gan-ring
data: {source: ring2d}
variables:
  x: {observed: true, shape: [2]}
  z: {prior: normal, shape: [16]}
networks:
  generator: {arch: mlp, hidden: [32]}
  discriminator: {arch: mlp, hidden: [32]}
edges:
  - {generative: z -> x, net: generator, dist: deterministic}
  - {adversarial: x, net: discriminator, objective: nonsaturating}
phases:
  - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
  - {name: generator, update: [generator], terms: [adversarial.g]}
train: {steps: 2, batch_size: 16}
"""

VAE = """\
unigen: 1
name: vae-digits
data: {source: digits, binarize: true}
variables:
  x: {observed: true, shape: [64]}
  z: {prior: normal, shape: [8]}
networks:
  encoder: {arch: mlp, hidden: [32]}
  decoder: {arch: mlp, hidden: [32]}
edges:
  - {generative: z -> x, net: decoder, dist: bernoulli}
  - {inference: x -> z, net: encoder, dist: normal}
phases:
  - {name: elbo, update: [encoder, decoder], terms: [elbo]}
train: {steps: 2, batch_size: 16}
"""


def variant(base: str, **sections: str) -> str:
    """`base` with whole top-level sections replaced by the given YAML."""
    doc = yaml.safe_load(base)
    for key, text in sections.items():
        doc[key] = yaml.safe_load(textwrap.dedent(text))
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)


@pytest.fixture
def check(registry):
    def run(text: str) -> list[Diagnostic]:
        try:
            spec, smap, _ = parse_spec(text, "spec.yaml", registry=registry)
            compile_spec(spec, registry, smap)
        except UnigenError as exc:
            return exc.diagnostics
        return []

    return run


def the(diags: list[Diagnostic], code: str) -> Diagnostic:
    found = [d for d in diags if d.code == code]
    assert len(found) == 1, f"expected one {code} in:\n" + "\n".join(map(str, diags))
    return found[0]


def codes(diags: list[Diagnostic]) -> list[str]:
    return sorted(d.code for d in diags)


def test_validate_base_specs_are_clean(check):
    assert check(GAN) == []
    assert check(VAE) == []


# ------------------------------------------------------------------ G001


def test_validate_g001_unknown_network_suggests_the_closest(check):
    text = variant(GAN, edges="""
        - {generative: z -> x, net: generater, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating}
    """)
    diags = check(text)
    d = the(diags, "G001")
    assert codes(diags) == ["G001"]  # structure is judged only once names resolve
    assert dotted(d.path) == "edges.0.net"
    assert d.message == "unknown network `generater`."
    assert d.hint == "did you mean `generator`?"
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "generater" in row)
    assert (d.file, d.line, d.col) == ("spec.yaml", line, text.splitlines()[line - 1].index("net:") + 1)


@pytest.mark.parametrize(
    "sections, path, message, hint",
    [
        ({"edges": "[{generative: zz -> x, net: generator, dist: deterministic}, {adversarial: x, net: discriminator, objective: nonsaturating}]"},
         "edges.0.generative", "unknown variable `zz`.", "did you mean `z`?"),
        ({"edges": "[{generative: z -> x, net: generator, dist: deterministic}, {adversarial: xs, net: discriminator, objective: nonsaturating}]"},
         "edges.1.adversarial", "unknown variable `xs`.", "did you mean `x`?"),
        ({"edges": "[{generative: z -> x, net: generator, dist: deterministic}, {adversarial: x, net: discriminator, objective: nonsaturating, real: [q.xx]}]"},
         "edges.1.real.0", "unknown variable `xx`.", "did you mean `x`?"),
        ({"edges": "[{generative: z -> x, net: generator, dist: determinstic}, {adversarial: x, net: discriminator, objective: nonsaturating}]"},
         "edges.0.dist", "unknown distribution `determinstic`.", "did you mean `deterministic`?"),
        ({"edges": "[{generative: z -> x, net: generator, dist: deterministic}, {adversarial: x, net: discriminator, objective: hinj}]"},
         "edges.1.objective", "unknown adversarial objective `hinj`.", "did you mean `hinge`?"),
        ({"data": "{source: ring}"}, "data.source", "unknown dataset `ring`.", "did you mean `ring2d`?"),
        ({"networks": "{generator: {arch: mpl}, discriminator: {arch: mlp}}"}, "networks.generator.arch", "unknown network architecture `mpl`.", "did you mean `mlp`?"),
        ({"variables": "{x: {observed: true, shape: [2]}, z: {prior: gaussian, shape: [16]}}"}, "variables.z.prior", "unknown distribution `gaussian`.", "choose one of:"),
        ({"variables": "{x: {observed: true, shape: [2]}, z: {prior: deterministic, shape: [16]}}"}, "variables.z.prior", "distribution `deterministic` cannot be a prior", "`normal`"),
        ({"phases": "[{name: d, update: [discriminater], terms: [adversarial.d]}, {name: g, update: [generator], terms: [adversarial.g]}]"},
         "phases.0.update.0", "unknown network `discriminater`.", "did you mean `discriminator`?"),
        ({"phases": "[{name: d, update: [discriminator], terms: [adversarial.dd]}, {name: g, update: [generator], terms: [adversarial.g]}]"},
         "phases.0.terms.0", "unknown term `adversarial.dd`.", "did you mean `adversarial.d`?"),
        ({"phases": "[{name: d, update: [discriminator], terms: [adversarial.d@adv_y]}, {name: g, update: [generator], terms: [adversarial.g]}]"},
         "phases.0.terms.0", "unknown edge `adv_y`.", "did you mean `adv_x`?"),
        ({"phases": "[{name: d, update: [discriminator], terms: [adversarial.d], optim: {kind: adamm}}, {name: g, update: [generator], terms: [adversarial.g]}]"},
         "phases.0.optim.kind", "unknown optimizer `adamm`.", "did you mean `adam`?"),
        ({"metrics": "[mode]"}, "metrics.0", "unknown metric `mode`.", "did you mean `modes`?"),
    ],
    ids=["variable", "judged-variable", "real-side", "dist", "objective", "dataset", "arch", "prior", "not-a-prior", "update", "term", "edge", "optimizer", "metric"],
)
def test_validate_g001_unknown_names(check, sections, path, message, hint):
    diags = check(variant(GAN, **sections))
    assert len(diags) == 1, "\n".join(map(str, diags))
    d = diags[0]
    assert (d.code, dotted(d.path)) == ("G001", path)
    assert message in d.message
    assert hint in d.hint


# ------------------------------------------------------------------ G002


def test_validate_g002_unused_network(check):
    diags = check(variant(GAN, networks="""
        generator: {arch: mlp, hidden: [32]}
        discriminator: {arch: mlp, hidden: [32]}
        critic: {arch: mlp}
    """))
    d = the(diags, "G002")
    assert codes(diags) == ["G002"]  # not also G011 "no phase updates it": one cause, one message
    assert dotted(d.path) == "networks.critic"
    assert "network `critic` is used by no edge" in d.message
    assert "`net: critic`" in d.hint


# ------------------------------------------------------------------ G003


def test_validate_g003_cycle_in_generative_edges(check):
    diags = check(variant(VAE, networks="""
        encoder: {arch: mlp, hidden: [32]}
        decoder: {arch: mlp, hidden: [32]}
        back: {arch: mlp}
    """, edges="""
        - {generative: z -> x, net: decoder, dist: bernoulli}
        - {inference: x -> z, net: encoder, dist: normal}
        - {generative: x -> z, net: back, dist: normal}
    """, phases="[{name: elbo, update: [encoder, decoder, back], terms: [elbo]}]"))
    d = the(diags, "G003")
    assert dotted(d.path) in {"edges.0.generative", "edges.2.generative"}
    assert re.search(r"the generative edges form a cycle: (x -> z -> x|z -> x -> z); p\(x, z\) must factor along a DAG", d.message)
    assert "`inference` edge" in d.hint


def test_validate_g003_self_loop_is_reported_once(check):
    diags = check(variant(GAN, edges="""
        - {generative: x -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating}
    """))
    d = the(diags, "G003")
    assert dotted(d.path) == "edges.0.generative"
    assert "points `x` at itself" in d.message
    assert d.hint == "remove the self-loop."


def test_validate_g003_cycle_in_inference_edges(check):
    diags = check(variant(VAE, networks="""
        encoder: {arch: mlp, hidden: [32]}
        decoder: {arch: mlp, hidden: [32]}
        back: {arch: mlp}
    """, edges="""
        - {generative: z -> x, net: decoder, dist: bernoulli}
        - {inference: x -> z, net: encoder, dist: normal}
        - {inference: z -> x, net: back, dist: normal}
    """, phases="[{name: elbo, update: [encoder, decoder, back], terms: [elbo]}]"))
    d = the(diags, "G003")
    assert dotted(d.path) in {"edges.1.inference", "edges.2.inference"}
    assert "the inference edges form a cycle" in d.message
    assert "x -> z" in d.message and "q(z | x) must factor along a DAG" in d.message


# ------------------------------------------------------------------ G004


def test_validate_g004_latent_root_without_prior(check):
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2]}
        z: {shape: [16]}
    """))
    d = the(diags, "G004")
    assert codes(diags) == ["G004"]
    assert dotted(d.path) == "variables.z"
    assert "latent root `z` has no prior" in d.message
    assert "`prior: normal`" in d.hint


# ------------------------------------------------------------------ G005


def test_validate_g005_observed_variable_without_data(check):
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2], data: pixels}
        z: {prior: normal, shape: [16]}
    """))
    d = the(diags, "G005")
    assert codes(diags) == ["G005"]
    assert dotted(d.path) == "variables.x"
    assert "dataset `ring2d` has no field `pixels`" in d.message
    assert "`data: <field>` to one of: x" in d.hint


def test_validate_g005_observed_variable_connected_to_nothing(check):
    diags = check(variant(VAE, variables="""
        x: {observed: true, shape: [64]}
        z: {prior: normal, shape: [8]}
        y: {observed: true, shape: [10]}
        label: {observed: true, shape: [3]}
    """))
    found = sorted((dotted(d.path), d.message) for d in diags if d.code == "G005")
    assert codes(diags) == ["G005", "G005"]  # one report each, even where the data is missing too
    assert [p for p, _ in found] == ["variables.label", "variables.y"]
    assert all("has no generative parent and is used by no edge" in m for _, m in found)


def test_validate_g005_generative_parent_does_not_replace_data(check):
    # The q-trace reads every observed variable from the batch.
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2], data: y}
        z: {prior: normal, shape: [16]}
    """))
    d = the(diags, "G005")
    assert "has no field `y`" in d.message


# ------------------------------------------------------------------ G006


BIGAN_NETWORKS = """
    generator: {arch: mlp, hidden: [32]}
    discriminator: {arch: mlp, hidden: [32]}
    encoder: {arch: mlp, hidden: [32]}
"""
BIGAN_PHASES = """
    - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
    - {name: generator, update: [generator, encoder], terms: [adversarial.g]}
"""


def test_validate_g006_inference_edge_that_approximates_no_posterior(check):
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2]}
        z: {prior: normal, shape: [16]}
        w: {prior: normal, shape: [4]}
    """, networks=BIGAN_NETWORKS, phases=BIGAN_PHASES, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {inference: x -> w, net: encoder, dist: normal}
        - {adversarial: [x, w], net: discriminator, objective: nonsaturating}
    """))
    d = the(diags, "G006")
    assert codes(diags) == ["G006"]
    assert dotted(d.path) == "edges.1.inference"
    assert "inference edge `q_w` (x -> w) approximates no posterior" in d.message
    assert "generative edge from `w`" in d.hint


def test_validate_g006_not_raised_when_the_latent_generates_the_data(check):
    # The same graph as a BiGAN: x -> z inverts z -> x.
    assert check(variant(GAN, networks=BIGAN_NETWORKS, phases=BIGAN_PHASES, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {inference: x -> z, net: encoder, dist: normal}
        - {adversarial: [x, z], net: discriminator, objective: nonsaturating}
    """)) == []


# ------------------------------------------------------------------ G007, G008


def test_validate_g007_adversarial_sides_of_different_shapes(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, real: [p.z], fake: [p.x]}
    """))
    d = the(diags, "G007")
    assert codes(diags) == ["G007"]
    assert dotted(d.path) == "edges.1"
    assert "compares `p.z` of shape [16] with `p.x` of shape [2]" in d.message
    assert "same shape" in d.hint


def test_validate_g007_adversarial_sides_of_different_lengths(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, fake: [p.x, p.z]}
    """))
    d = the(diags, "G007")
    assert "compares 1 real variable(s) with 2 fake one(s)" in d.message
    assert "same number" in d.hint


def test_validate_g008_fake_side_with_nothing_trainable_behind_it(check):
    diags = check(variant(GAN, networks="""
        generator: {arch: mlp, hidden: [32], trainable: false}
        discriminator: {arch: mlp, hidden: [32]}
    """, phases="[{name: discriminator, update: [discriminator], terms: [adversarial.d]}]"))
    d = the(diags, "G008")
    assert codes(diags) == ["G008"]
    assert dotted(d.path) == "edges.1"
    assert "nothing trainable stands behind its fake side (p.x) nor its real side (q.x)" in d.message
    assert "trainable network" in d.hint


def test_validate_g008_accepts_a_trainable_real_side_as_avb_needs(check):
    # AVB: the adversary judges (x, z) with z from an implicit encoder q(z | x, eps) as the real
    # side against (x, z ~ p(z)); the encoder learns by moving the real side. eps is noise that the
    # q-trace draws from its prior (trace completion).
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2]}
        z: {prior: normal, shape: [2]}
        eps: {prior: normal, shape: [4], complete: true}
    """, networks="""
        generator: {arch: mlp, hidden: [32]}
        encoder: {arch: mlp, hidden: [32]}
        discriminator: {arch: mlp, hidden: [32]}
    """, edges="""
        - {generative: z -> x, net: generator, dist: normal}
        - {inference: "x, eps -> z", net: encoder, dist: deterministic}
        - {adversarial: [x, z], net: discriminator, objective: nonsaturating, real: [q.x, q.z], fake: [q.x, p.z]}
    """, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: encoder, update: [encoder], terms: [adversarial.g]}
        - {name: decoder, update: [generator], terms: [wake]}
    """))
    assert codes(diags) == []


# ------------------------------------------------------------------ G009, G010, G011


def test_validate_g009_phase_that_updates_nothing(check):
    diags = check(variant(GAN, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: generator, update: [], terms: [adversarial.g]}
    """))
    d = the(diags, "G009")
    assert dotted(d.path) == "phases.1.update"
    assert d.message == "phase `generator` updates no network."
    assert "update: [generator]" in d.hint


def test_validate_g009_phase_without_terms(check):
    diags = check(variant(GAN, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: generator, update: [generator], terms: []}
    """))
    d = the(diags, "G009")
    assert codes(diags) == ["G009"]  # no G010 about the gradient of no terms
    assert dotted(d.path) == "phases.1.terms"
    assert "has no terms, so its loss is empty" in d.message


def test_validate_g009_spec_without_phases(check):
    d = the(check(variant(GAN, phases="[]")), "G009")
    assert dotted(d.path) == "phases"
    assert "no phases" in d.message and "`family:`" in d.hint


def test_validate_g009_phase_updates_a_frozen_network(check):
    diags = check(variant(VAE, networks="""
        encoder: {arch: mlp, hidden: [32]}
        decoder: {arch: mlp, hidden: [32], trainable: false}
    """))
    d = the(diags, "G009")
    assert dotted(d.path) == "phases.0.update"
    assert "updates `decoder`, which is declared `trainable: false`" in d.message


def test_validate_g010_terms_cannot_reach_an_updated_network(check):
    diags = check(variant(VAE, networks="""
        encoder: {arch: mlp, hidden: [32]}
        decoder: {arch: mlp, hidden: [32]}
        discriminator: {arch: mlp, hidden: [32]}
    """, edges="""
        - {generative: z -> x, net: decoder, dist: bernoulli}
        - {inference: x -> z, net: encoder, dist: normal}
        - {adversarial: x, net: discriminator, objective: nonsaturating}
    """, phases="[{name: elbo, update: [encoder, decoder, discriminator], terms: [elbo]}]"))
    d = the(diags, "G010")
    assert codes(diags) == ["G010"]
    assert dotted(d.path) == "phases.0.update"
    assert "phase `elbo` updates `discriminator`, but the gradient of its terms (elbo) cannot reach it (they reach: decoder, encoder)" in d.message
    assert "drop `discriminator` from `update`" in d.hint


def test_validate_g011_trainable_network_no_phase_updates(check):
    diags = check(variant(GAN, phases="[{name: discriminator, update: [discriminator], terms: [adversarial.d]}]"))
    d = the(diags, "G011")
    assert codes(diags) == ["G011"]
    assert dotted(d.path) == "networks.generator"
    assert "network `generator` is trainable but no phase updates it" in d.message
    assert "`trainable: false`" in d.hint


# ------------------------------------------------------------------ G012


def test_validate_g012_shape_mismatch_with_the_data(check):
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [3]}
        z: {prior: normal, shape: [16]}
    """))
    d = the(diags, "G012")
    assert codes(diags) == ["G012"]
    assert dotted(d.path) == "variables.x.shape"
    assert "has shape [3] but dataset `ring2d` gives `x` with shape [2]" in d.message
    assert "`shape: [2]`" in d.hint


def test_validate_g012_one_network_on_edges_of_different_shapes(check):
    diags = check(variant(VAE, edges="""
        - {generative: z -> x, net: decoder, dist: bernoulli}
        - {inference: x -> z, net: decoder, dist: normal}
    """, networks="{decoder: {arch: mlp, hidden: [32]}}", phases="[{name: elbo, update: [decoder], terms: [elbo]}]"))
    d = the(diags, "G012")
    assert dotted(d.path) == "edges.1.net"
    assert "network `decoder` computes edge `p_x` ([8] -> [64]) and edge `q_z` ([64] -> [16])" in d.message
    assert "separate network" in d.hint


def test_validate_g012_edge_distribution_that_cannot_take_the_childs_shape(check):
    diags = check(variant(VAE, data="{source: digits, flatten: false}", variables="""
        x: {observed: true, shape: [1, 8, 8]}
        z: {prior: normal, shape: [8]}
    """, edges="""
        - {generative: z -> x, net: decoder, dist: categorical}
        - {inference: x -> z, net: encoder, dist: normal}
    """))
    d = the(diags, "G012")
    assert dotted(d.path) == "edges.0.dist"
    assert "edge `p_x`: distribution `categorical` on `x` [1, 8, 8]: a one-hot categorical needs a shape [K]" in d.message
    assert "`dist`" in d.hint


def test_validate_g012_shape_a_distribution_cannot_take(check):
    diags = check(variant(GAN, variables="""
        x: {observed: true, shape: [2]}
        z: {prior: categorical, shape: [4, 4]}
    """))
    d = the(diags, "G012")
    assert dotted(d.path) == "variables.z.shape"
    assert "prior `categorical` of `z`: a one-hot categorical needs a shape [K], not [4, 4]" in d.message
    assert d.hint


# ------------------------------------------------------------------ G013


def test_validate_g013_two_generative_edges_into_one_variable(check):
    diags = check(variant(GAN, networks="""
        generator: {arch: mlp, hidden: [32]}
        discriminator: {arch: mlp, hidden: [32]}
        other: {arch: mlp}
    """, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {generative: z -> x, net: other, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating}
    """, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: generator, update: [generator, other], terms: [adversarial.g]}
    """))
    d = the(diags, "G013")
    assert dotted(d.path) == "edges.1"
    assert "variable `x` has two generative edges (edges 0 and 1)" in d.message
    assert "`a, b -> x`" in d.hint


def test_validate_g013_duplicate_edge_and_phase_names(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic, name: link}
        - {adversarial: x, net: discriminator, objective: nonsaturating, name: link}
    """, phases="""
        - {name: train, update: [discriminator], terms: [adversarial.d]}
        - {name: train, update: [generator], terms: [adversarial.g]}
    """))
    found = sorted((dotted(d.path), d.message) for d in diags if d.code == "G013")
    assert found == [
        ("edges.1", "two edges are named `link` (edges 0 and 1); expected distinct names."),
        ("phases.1.name", "two phases are named `train`."),
    ]


def test_validate_g013_network_listed_twice_in_a_phase(check):
    diags = check(variant(GAN, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: generator, update: [generator, generator], terms: [adversarial.g]}
    """))
    d = the(diags, "G013")
    assert dotted(d.path) == "phases.1.update.1"
    assert "phase `generator` lists network `generator` twice in `update`" in d.message and d.hint == "list each network once."


# ------------------------------------------------------------------ G014, G015, G016


def test_validate_g014_term_needs_what_the_graph_lacks(check):
    diags = check(variant(GAN, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d]}
        - {name: generator, update: [generator], terms: [elbo]}
    """))
    d = the(diags, "G014")
    assert dotted(d.path) == "phases.1.terms.0"
    assert "term `elbo`: generative edge `p_x` is `deterministic` and has no density" in d.message
    assert "`dist: bernoulli`" in d.hint


def test_validate_g014_adversarial_side_the_trace_cannot_produce(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, real: [q.z], fake: [p.z]}
    """))
    d = the(diags, "G014")
    assert dotted(d.path) == "edges.1"
    assert "needs `z` in the q-trace, which has no way to produce it" in d.message
    assert d.hint == "add an inference edge into `z`."


def test_validate_g015_term_on_the_wrong_kind_of_edge(check):
    diags = check(variant(GAN, phases="""
        - {name: discriminator, update: [discriminator], terms: [adversarial.d@p_x]}
        - {name: generator, update: [generator], terms: [adversarial.g]}
    """))
    d = the(diags, "G015")
    assert dotted(d.path) == "phases.0.terms.0"
    assert d.message == "term `adversarial.d` attaches to an adversarial edge, but `p_x` is generative."
    assert d.hint == "name an adversarial edge: `adv_x`."


def test_validate_g015_whole_model_term_with_a_target(check):
    d = the(check(variant(VAE, phases="[{name: elbo, update: [encoder, decoder], terms: [elbo@q_z]}]")), "G015")
    assert dotted(d.path) == "phases.0.terms.0"
    assert "applies to the whole model and takes no `@q_z`" in d.message
    assert d.hint == "write `elbo`."


def test_validate_g015_term_without_a_target_edge(check):
    d = the(check(variant(VAE, phases="[{name: elbo, update: [encoder, decoder], terms: [elbo, adversarial.d]}]")), "G015")
    assert dotted(d.path) == "phases.0.terms.1"
    assert "attaches to an adversarial edge, and the graph has none" in d.message
    assert d.hint == "add an adversarial edge."


@pytest.mark.parametrize(
    "sections, path, message, hint",
    [
        ({"networks": "{encoder: {arch: mlp, hiden: [32]}, decoder: {arch: mlp}}"}, "networks.encoder.hiden", "network architecture `mlp` has no option `hiden`.", "did you mean `hidden`?"),
        ({"data": "{source: digits, binarise: true}"}, "data.binarise", "dataset `digits` has no option `binarise`.", "did you mean `binarize`?"),
        ({"train": "{optim: {kind: adam, beta: [0.5, 0.9]}}"}, "train.optim.beta", "optimizer `adam` has no option `beta`.", "did you mean `betas`?"),
        ({"phases": "[{name: elbo, update: [encoder, decoder], terms: [{term: elbo, options: {beta: -1}}]}]"}, "phases.0.terms.0.options.beta", "term `elbo`", ""),
        ({"edges": "[{generative: z -> x, net: decoder, dist: bernoulli, options: {temperature: 2}}, {inference: x -> z, net: encoder, dist: normal}]"},
         "edges.0.options.temperature", "distribution `bernoulli` takes no options", "remove them."),
    ],
    ids=["arch", "dataset", "optimizer", "term", "dist"],
)
def test_validate_g016_bad_options_for_a_kind(check, sections, path, message, hint):
    diags = check(variant(VAE, **sections))
    d = the(diags, "G016")
    assert dotted(d.path) == path
    assert message in d.message
    assert hint in d.hint


# ------------------------------------------------------------------ parse errors of edges


def test_validate_bad_arrow_is_s002_without_follow_on_errors(check):
    diags = check(variant(VAE, edges="""
        - {generative: z -> x -> y, net: decoder, dist: bernoulli}
        - {inference: x -> z, net: encoder, dist: normal}
    """))
    # The dropped edge would otherwise make `decoder` look unused and `q_z` explain nothing.
    assert [(d.code, dotted(d.path)) for d in diags] == [("S002", "edges.0.generative")]
    assert "is not of the form `parent -> child`" in diags[0].message


def test_validate_bad_adversarial_side_items_are_all_reported(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, real: [x], fake: [r.x]}
    """))
    assert [(d.code, dotted(d.path)) for d in diags] == [("S002", "edges.1.real.0"), ("S002", "edges.1.fake.0")]


def test_validate_adversarial_edge_without_objective(check):
    diags = check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator}
    """))
    # `objective` is required on adversarial edges: one S003, not "unknown objective ``".
    assert [(d.code, dotted(d.path)) for d in diags] == [("S003", "edges.1")]
    assert diags[0].message.startswith("adversarial edge `adv_x` has no `objective`; expected one of: ")
    assert "nonsaturating" in diags[0].message
    assert "`objective: <name>`" in diags[0].hint


def test_validate_link_named_like_a_variable_keeps_the_variable(registry):
    from unigen.graph.model import build_graph

    text = variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, name: x}
    """)
    spec, _, _ = parse_spec(text, "spec.yaml", registry=registry)
    g = build_graph(spec).g
    assert g.nodes["x"]["kind"] == "variable"
    assert g.nodes["link:x"]["kind"] == "link"


# ------------------------------------------------------------------ several at once


def test_validate_reports_every_independent_problem_at_once(cli, write_spec, check):
    text = variant(GAN, variables="""
        x: {observed: true, shape: [3]}
        z: {shape: [16]}
    """, networks="""
        generator: {arch: mlp, hidden: [32]}
        discriminator: {arch: mlp, hidden: [32]}
        critic: {arch: mlp}
    """)
    diags = check(text)
    assert sorted((d.code, dotted(d.path)) for d in diags) == [
        ("G002", "networks.critic"),
        ("G004", "variables.z"),
        ("G012", "variables.x.shape"),
    ]
    code, _, err = cli("validate", write_spec(text))
    assert code == 2
    assert "3 problems found." in err
    assert all(c in err for c in ("G002", "G004", "G012"))


# ------------------------------------------------------------------ the command line


MALFORMED = {
    "yaml-syntax": (GAN.replace("data: {source: ring2d}", "data: {source: ring2d"), "Y001", 4),
    "unknown-key": (GAN.replace("networks:", "netwroks:"), "S001", 7),
    "unknown-network": (GAN.replace("net: generator,", "net: generater,"), "G001", 11),
    "cyclic-generative": (GAN.replace("{adversarial: x,", "{generative: x -> z, net: back, dist: normal}\n  - {adversarial: x,").replace("networks:\n", "networks:\n  back: {arch: mlp}\n"), "G003", None),
    "shape-mismatch": (GAN.replace("shape: [2]", "shape: [5]"), "G012", 5),
    "empty-file": ("# nothing here yet\n", "Y003", 1),
}


@pytest.mark.parametrize("command", ["validate", "compile-and-train"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_cli_malformed_spec_exits_2_with_a_located_message(cli, write_spec, tmp_path, command, case):
    text, expected, line = MALFORMED[case]
    path = write_spec(text)
    extra = ["--out", str(tmp_path / "run"), "--quiet"] if command == "compile-and-train" else []
    code, out, err = cli(command, path, *extra)
    assert code == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: .*{expected} ", err, re.M), err
    if line is not None:
        assert f"{path}:{line}:" in err
    assert not (tmp_path / "run").exists()  # nothing is written before the spec is valid


def test_validate_g001_prior_only_distribution_on_an_edge(check):
    d = the(check(GAN.replace("dist: deterministic", "dist: uniform")), "G001")
    assert dotted(d.path) == "edges.0.dist"
    assert "prior only" in d.message and "did you mean" in d.hint


# ------------------------------------------------------------------ non-finite numbers (S002)

FINITE_HINT = "write a finite number such as `1e-3`; `.inf`, `-.inf` and `.nan` are not numbers a spec takes."


@pytest.mark.parametrize(
    "base, sections, path, shown",
    [
        (VAE, {"train": "{steps: 2, batch_size: 16, optim: {lr: .inf}}"}, "train.optim.lr", "inf"),
        (VAE, {"train": "{steps: 2, batch_size: 16, optim: {lr: .nan}}"}, "train.optim.lr", "nan"),
        (VAE, {"train": "{steps: 2, batch_size: 16, optim: {lr: -.inf}}"}, "train.optim.lr", "-inf"),  # not only `lr > 0`
        (VAE, {"train": "{steps: 2, batch_size: 16, optim: {kind: adam, betas: [0.5, .inf]}}"}, "train.optim.betas.1", "inf"),
        (VAE, {"phases": "[{name: elbo, update: [encoder, decoder], terms: [elbo], optim: {lr: .nan}}]"}, "phases.0.optim.lr", "nan"),
        (VAE, {"phases": "[{name: elbo, update: [encoder, decoder], terms: [{term: elbo, weight: .inf}]}]"}, "phases.0.terms.0.weight", "inf"),
        (VAE, {"phases": "[{name: elbo, update: [encoder, decoder], terms: [{term: elbo, options: {beta: .inf}}]}]"}, "phases.0.terms.0.options.beta", "inf"),
        (VAE, {"networks": "{encoder: {arch: mlp, hidden: [32], dropout: .nan}, decoder: {arch: mlp, hidden: [32]}}"}, "networks.encoder.dropout", "nan"),
        (VAE, {"networks": "{encoder: {arch: mlp, hidden: [32, -.inf]}, decoder: {arch: mlp, hidden: [32]}}"}, "networks.encoder.hidden.1", "-inf"),
        (VAE, {"networks": "{encoder: {arch: mlp, hidden: [32], ema: .nan}, decoder: {arch: mlp, hidden: [32]}}"}, "networks.encoder.ema", "nan"),
        (GAN, {"data": "{source: ring2d, sigma: .inf}"}, "data.sigma", "inf"),
        (GAN, {"edges": "[{generative: z -> x, net: generator, dist: deterministic}, {adversarial: x, net: discriminator, objective: nonsaturating, options: {r1: .nan}}]"},
         "edges.1.options.r1", "nan"),
        (GAN, {"edges": "[{generative: z -> x, net: generator, dist: deterministic}, {adversarial: x, net: discriminator, objective: nonsaturating, options: {deep: {a: [1, -.inf]}}}]"},
         "edges.1.options.deep.a.1", "-inf"),
    ],
    ids=["lr-inf", "lr-nan", "lr-minus-inf", "optimizer-option", "phase-optim", "term-weight", "term-option", "network-option", "network-option-list", "ema", "dataset-option", "edge-option", "edge-option-nested"],
)
def test_validate_non_finite_number_is_s002_at_its_key(check, base, sections, path, shown):
    text = variant(base, **sections)
    diags = check(text)
    assert len(diags) == 1, "\n".join(map(str, diags))
    d = diags[0]
    assert (d.code, dotted(d.path)) == ("S002", path)
    assert d.message == f"invalid value {shown}; expected a finite number."
    assert d.hint == FINITE_HINT
    key = next(str(p) for p in reversed(d.path) if isinstance(p, str))
    assert d.file == "spec.yaml" and d.line > 0
    assert f"{key}:" in text.splitlines()[d.line - 1]  # located at the key in the file


def test_validate_every_non_finite_number_is_reported_at_once(check):
    text = variant(GAN, networks="""
        generator: {arch: mlp, hidden: [32], dropout: .inf}
        discriminator: {arch: mlp, hidden: [32]}
    """, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, options: {r1: .nan, r2: -.inf}}
    """, train="{steps: 2, batch_size: 16, optim: {lr: .inf, betas: [.nan, 0.9]}}")
    diags = check(text)
    assert sorted((d.code, dotted(d.path)) for d in diags) == [
        ("S002", "edges.1.options.r1"),
        ("S002", "edges.1.options.r2"),
        ("S002", "networks.generator.dropout"),
        ("S002", "train.optim.betas.0"),
        ("S002", "train.optim.lr"),
    ]
    assert all(d.message.endswith("expected a finite number.") for d in diags)


def test_validate_finite_numbers_and_other_values_still_pass(check):
    assert check(variant(GAN, edges="""
        - {generative: z -> x, net: generator, dist: deterministic}
        - {adversarial: x, net: discriminator, objective: nonsaturating, options: {real_label: 0.9}}
    """, train="{steps: 2, batch_size: 16, optim: {lr: 2e-4, betas: [0.5, 0.999], eps: 1e-8}}")) == []


@pytest.mark.parametrize(
    "kind, name, options, path",
    [
        ("terms", "elbo", {"beta": float("inf")}, "phases.0.terms.0.options.beta"),
        ("objectives", "wgan_gp", {"gp": float("nan")}, "edges.1.options.gp"),
        ("networks", "mlp", {"dropout": float("-inf")}, "networks.encoder.dropout"),
    ],
    ids=["term", "objective", "arch"],
)
def test_validate_kind_options_refuse_non_finite_numbers_g016(registry, kind, name, options, path):
    # Options models derive from `unigen.api.kinds.Options`, which refuses NaN and infinities.
    prefix = tuple(int(p) if p.isdigit() else p for p in path.split(".")[:-1])
    _, diags = registry.options(kind, name, options, prefix)
    assert len(diags) == 1, diags
    d = diags[0]
    assert (d.code, dotted(d.path)) == ("G016", path)
    assert "Input should be a finite number" in d.message and repr(next(iter(options.values()))) in d.message


@pytest.mark.parametrize("value, shown", [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan")])
def test_validate_cli_non_finite_override_is_refused(cli, value, shown):
    spec = ROOT / "specs" / "vae-digits.yaml"
    code, out, err = cli("validate", spec, f"train.optim.lr={value}")
    assert code == 2, out + err
    assert "Traceback" not in err and "Traceback" not in out
    # located on the command line, where the value is, not at the file's `lr:` line
    assert re.search(rf"^override 1 `train\.optim\.lr={re.escape(value)}`: train\.optim\.lr: S002 invalid value {re.escape(shown)}; expected a finite number\. Hint: ", err, re.M), err


# ------------------------------------------------------------------ network names that nn.ModuleDict holds (S002)


def _renamed(base: str, old: str, new: str) -> str:
    doc = yaml.safe_load(base)
    doc["networks"] = {new if k == old else k: v for k, v in doc["networks"].items()}
    for e in doc["edges"]:
        e["net"] = new if e["net"] == old else e["net"]
    for ph in doc["phases"]:
        ph["update"] = [new if n == old else n for n in ph["update"]]
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)


@pytest.mark.parametrize(
    "name, other",
    [("parameters", "parameters_net"), ("training", "training_net"), ("to", "to_net"), ("forward", "forward_net"), ("state_dict", "state_dict_net"),
     ("cuda", "cuda_net"), ("keys", "keys_net"), ("_modules", "modules_net"), ("__class__", "class_net"), ("_x", "x_net")],
)
def test_validate_network_named_like_a_module_attribute_is_s002(check, name, other):
    text = _renamed(VAE, "encoder", name)
    diags = check(text)
    assert len(diags) == 1, "\n".join(map(str, diags))
    d = diags[0]
    assert (d.code, dotted(d.path)) == ("S002", f"networks.{name}")
    why = "starts with `_`, which torch keeps for a module's own state" if name.startswith("_") else "is an attribute of torch's `nn.ModuleDict`, which holds the networks"
    assert d.message == (
        f"network name `{name}` {why}, so training could not store the network under it; "
        "expected a name that does not start with `_` and is no `nn.ModuleDict` attribute (such as `parameters`, `training`, `to`)."
    )
    assert d.hint == f"rename the network, e.g. to `{other}`, and its uses in `net:` and `update:`."
    assert d.file == "spec.yaml" and text.splitlines()[d.line - 1].lstrip().startswith(f"{name}:")
    assert check(_renamed(VAE, "encoder", other)) == []  # the suggested name is fine


def test_validate_every_reserved_network_name_is_reported(check):
    text = _renamed(_renamed(VAE, "encoder", "parameters"), "decoder", "_modules")
    assert sorted((d.code, dotted(d.path)) for d in check(text)) == [("S002", "networks._modules"), ("S002", "networks.parameters")]


@pytest.mark.parametrize("name", ["parameters", "training", "_modules"])
def test_validate_cli_compile_and_train_refuses_a_reserved_network_name(cli, write_spec, tmp_path, name):
    path = write_spec(_renamed(VAE, "encoder", name))
    code, out, err = cli("compile-and-train", path, "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2, out + err
    assert "Traceback" not in err and "Traceback" not in out
    assert "KeyError" not in err and "already exists" not in err
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: networks\.{re.escape(name)}: S002 network name `{re.escape(name)}` ", err, re.M), err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------- metrics with options


def test_validate_metric_options_are_checked_where_they_are_written(check):
    diags = check(variant(VAE, metrics="""
        - elbo
        - {metric: iwae, options: {k: 0, kk: 3}}
        - {metric: iwea}
    """))
    assert sorted((d.code, dotted(d.path)) for d in diags) == [("G001", "metrics.2.metric"), ("G016", "metrics.1.options.k"), ("G016", "metrics.1.options.kk")]
    assert "iwae" in the(diags, "G001").hint  # the near name is offered
    diags = check(variant(VAE, metrics="[{metric: elbo, options: {k: 3}}]"))
    assert [(d.code, dotted(d.path)) for d in diags] == [("G016", "metrics.0.options.k")]
    assert "takes no options" in diags[0].message


def test_compiled_metric_carries_its_options_and_the_registry_keeps_its_own(registry):
    spec, smap, _ = parse_spec(variant(VAE, metrics="[elbo, {metric: iwae, options: {k: 7, examples: 20}}]"), "spec.yaml", registry=registry)
    program = compile_spec(spec, registry, smap)
    assert program.metric_names == ("elbo", "iwae")
    node = next(m for m in program.metrics if m.name == "iwae")
    assert (node.metric.options.k, node.metric.options.examples) == (7, 20)
    assert registry.get("metrics", "iwae").options is None  # the shared object is unchanged
    assert next(m for m in program.metrics if m.name == "elbo").metric is registry.get("metrics", "elbo")
