"""The coupled plugin: `shared` (CoGAN's weight sharing over ports), `tied` (W and W^T) and the
`pair_agreement` metric; and the CoGAN spec compiled and trained through the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from unigen_coupled.metrics import PairAgreement, chance_agreement, mean_pairwise_l1, mutual_information, score_pairs
from unigen_coupled.nets import SharedArch, SharedOptions, TiedArch

ROOT = Path(__file__).resolve().parents[1]
COGAN = ROOT / "specs" / "cogan-digits.yaml"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _linear(a: int, b: int) -> int:
    return a * b + b


# ------------------------------------------------------------------ shared


@pytest.mark.parametrize("share", ["first", "last"])
def test_shared_holds_one_shared_block_and_one_own_block_per_port(share: str) -> None:
    o = SharedOptions(ports=["a", "b", "c"], share=share, shared_hidden=[32], own_hidden=[16])
    if share == "first":  # z [8] -> shared 32 -> own 16 -> x [64]
        sig = {p: ([(8,)], (64,)) for p in ("a", "b")}
        shared, own = _linear(8, 32), _linear(32, 16) + _linear(16, 64)
    else:  # x [64] -> own 16 -> shared 32 -> logit [1]
        sig = {p: ([(64,)], (1,)) for p in ("a", "b")}
        shared, own = _linear(16, 32) + _linear(32, 1), _linear(64, 16)
    net = SharedArch().build_ports(sig, o)
    # port c is used by no edge: it has no block of its own
    assert sorted(net.own) == ["a", "b"]
    assert _count(net.shared) == shared
    assert _count(net) == shared + 2 * own
    assert len(list(net.parameters())) == len({id(p) for p in net.parameters()})


@pytest.mark.parametrize("share", ["first", "last"])
def test_a_gradient_through_port_a_reaches_the_shared_block_and_not_port_b(share: str) -> None:
    o = SharedOptions(ports=["a", "b"], share=share, shared_hidden=[12], own_hidden=[10], out_activation="sigmoid")
    sig = {p: ([(6,)], (5,)) for p in ("a", "b")}
    net = SharedArch().build_ports(sig, o)
    torch.manual_seed(0)
    x = torch.randn(7, 6)
    net(x, port="a").sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.shared.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.own["a"].parameters())
    assert all(p.grad is None for p in net.own["b"].parameters())
    # the two ports differ only in their own blocks: copying a's into b gives b a's output
    net.own["b"].load_state_dict(net.own["a"].state_dict())
    assert torch.equal(net(x, port="a"), net(x, port="b"))


def test_shared_port_paths_match_the_hand_written_layers_in_float64() -> None:
    o = SharedOptions(ports=["a", "b"], share="first", shared_hidden=[5], own_hidden=[4], activation="tanh", out_activation="sigmoid")
    net = SharedArch().build_ports({"a": ([(2,), (1,)], (3,)), "b": ([(2,), (1,)], (2, 2))}, o).double()
    z, y = torch.randn(6, 2, dtype=torch.float64, requires_grad=True), torch.randn(6, 1, dtype=torch.float64)
    s, ob = net.shared[0], net.own["b"]
    hand = torch.sigmoid(ob[2](torch.tanh(ob[0](torch.tanh(s(torch.cat([z, y], 1)))))))
    W0, b0, W1, b1, W2, b2 = s.weight, s.bias, ob[0].weight, ob[0].bias, ob[2].weight, ob[2].bias
    formula = torch.sigmoid(torch.tanh(torch.tanh(torch.cat([z, y], 1) @ W0.T + b0) @ W1.T + b1) @ W2.T + b2)
    out = net(z, y, port="b")
    assert out.shape == (6, 2, 2)
    torch.testing.assert_close(out.reshape(6, 4), formula, rtol=0, atol=1e-12)
    torch.testing.assert_close(hand, formula, rtol=0, atol=1e-12)
    (g_net,) = torch.autograd.grad(out.pow(2).sum(), z)
    (g_formula,) = torch.autograd.grad(formula.pow(2).sum(), z)
    torch.testing.assert_close(g_net, g_formula, rtol=0, atol=1e-12)


def test_shared_hidden_empty_shares_nothing() -> None:
    o = SharedOptions(ports=["a", "b"], share="last", shared_hidden=[], own_hidden=[16])
    net = SharedArch().build_ports({"a": ([(64,)], (1,)), "b": ([(32,)], (2,))}, o)
    assert _count(net.shared) == 0
    assert _count(net.own["a"]) == _linear(64, 16) + _linear(16, 1)
    assert _count(net.own["b"]) == _linear(32, 16) + _linear(16, 2)


def test_shared_refuses_ports_whose_shapes_cannot_share_layers() -> None:
    arch = SharedArch()
    first = SharedOptions(ports=["a", "b"], share="first", shared_hidden=[8], own_hidden=[8])
    with pytest.raises(ValueError, match=r"with `share: first` every port feeds the same shared layers, so all take the same input shapes; the edges give `a`: \[4\] -> \[3\]; `b`: \[5\] -> \[3\]"):
        arch.build_ports({"a": ([(4,)], (3,)), "b": ([(5,)], (3,))}, first)
    last = SharedOptions(ports=["a", "b"], share="last", shared_hidden=[8], own_hidden=[8])
    assert arch.check_ports({"a": ([(4,)], (1,)), "b": ([(5,)], (1,))}, last) == []
    with pytest.raises(ValueError, match=r"with `share: last` every port ends in the same shared layers, so all give the same output shape; the edges give `a`: \[4\] -> \[1\]; `b`: \[4\] -> \[2\]"):
        arch.build_ports({"a": ([(4,)], (1,)), "b": ([(4,)], (2,))}, last)
    bare = SharedOptions(ports=["a", "b"], share="last", shared_hidden=[8], own_hidden=[])
    assert "as many input elements" in arch.check_ports({"a": ([(4,)], (1,)), "b": ([(5,)], (1,))}, bare)[0]
    assert arch.check_ports({"c": ([(4,)], (1,))}, last) == ["port `c` is not one of the network's ports (`a`, `b`)"]
    net = arch.build_ports({"a": ([(4,)], (1,)), "b": ([(4,)], (1,))}, last)
    with pytest.raises(ValueError, match="this network has no port `c`; its ports are `a`, `b`"):
        net(torch.zeros(1, 4), port="c")


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (["a"], "at least 2 items"),
        (["a", "1b"], "`1b` is not a name"),
        (["a", "a"], "each port is named once; `a` appears twice"),
        (["a", "keys"], "`keys` cannot name a port"),
    ],
)
def test_shared_options_refuse_bad_port_lists(ports: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SharedOptions(ports=ports)


def test_shared_lists_its_ports() -> None:
    assert SharedArch().ports(SharedOptions(ports=["a", "b"])) == ("a", "b")
    assert TiedArch().ports(None) == ("up", "down")


# ------------------------------------------------------------------- tied


def test_tied_up_and_down_are_w_and_w_transposed_in_float64() -> None:
    torch.manual_seed(0)
    net = TiedArch().build_ports({"up": ([(6,)], (4,)), "down": ([(4,)], (2, 3))}, None).double()
    assert _count(net) == 6 * 4 + 4 + 6  # one W and two biases
    with torch.no_grad():
        net.up_bias.normal_()
        net.down_bias.normal_()
    W, b, c = net.weight, net.up_bias, net.down_bias
    x = torch.randn(5, 6, dtype=torch.float64)
    h = torch.randn(5, 4, dtype=torch.float64)
    r = torch.randn(5, 6, dtype=torch.float64)
    up, down = net(x, port="up"), net(h, port="down")
    assert down.shape == (5, 2, 3)
    U = x @ W.detach().T + b.detach()  # W x + b
    D = h @ W.detach() + c.detach()  # W^T h + c
    torch.testing.assert_close(up, U, rtol=0, atol=1e-12)
    torch.testing.assert_close(down.reshape(5, 6), D, rtol=0, atol=1e-12)
    loss = up.pow(2).sum() + (down.reshape(5, 6) * r).sum()
    gW, gb, gc = torch.autograd.grad(loss, [W, b, c])
    # d/dW sum (W x + b)^2 = 2 sum_i (W x_i + b) x_i^T;  d/dW sum r . (W^T h + c) = sum_i h_i r_i^T
    torch.testing.assert_close(gW, 2 * U.T @ x + h.T @ r, rtol=0, atol=1e-12)
    torch.testing.assert_close(gb, 2 * U.sum(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(gc, r.sum(0), rtol=0, atol=1e-12)
    with torch.no_grad():  # one matrix: changing W changes both ports
        net.weight[0, 0] += 1.0
    assert not torch.equal(net(x, port="up")[:, 0], up[:, 0].detach())
    assert not torch.equal(net(h, port="down")[:, 0, 0], down[:, 0, 0].detach())


def test_tied_refuses_shapes_w_transposed_cannot_give() -> None:
    arch = TiedArch()
    with pytest.raises(ValueError, match=r"port `up` maps \[64\] -> \[16\], so W is 16 x 64 and port `down` \(W\^T\) maps 16 elements to 64; but its edge maps \[16\] -> \[128\]\. The `down` edge asks for 2 outputs per element"):
        arch.build_ports({"up": ([(64,)], (16,)), "down": ([(16,)], (128,))}, None)
    with pytest.raises(ValueError, match=r"The `up` edge asks for 2 outputs per element .* Use a distribution with one output per element on tied edges"):
        arch.build_ports({"up": ([(64,)], (32,)), "down": ([(16,)], (64,))}, None)
    with pytest.raises(ValueError, match=r"port `up` maps one parent, but its edge has 2: \[3\], \[4\]"):
        arch.build_ports({"up": ([(3,), (4,)], (2,))}, None)
    only_down = arch.build_ports({"down": ([(3,)], (7,))}, None)  # W sized from the one port used
    assert only_down.weight.shape == (3, 7)


# ------------------------------------------------------------------ metric


def test_the_shuffled_floor_is_the_expectation_over_all_permutations() -> None:
    ca = torch.tensor([0, 1, 1, 2, 0, 1])
    cb = torch.tensor([1, 1, 0, 2, 2, 1])
    perms = list(itertools.permutations(range(6)))
    brute = sum(float((ca == cb[list(p)]).double().mean()) for p in perms) / len(perms)
    assert chance_agreement(ca, cb) == pytest.approx(brute, abs=1e-12)
    x, y = torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64)
    brute_l1 = sum(float((x - y[list(p)]).abs().mean()) for p in itertools.permutations(range(4))) / math.factorial(4)
    assert mean_pairwise_l1(x, y) == pytest.approx(brute_l1, abs=1e-12)


def test_mutual_information_matches_its_formula() -> None:
    ca = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    cb = torch.tensor([1, 1, 0, 2, 2, 2, 0, 1])
    n = len(ca)
    joint = {(i, j): sum(1 for x, y in zip(ca.tolist(), cb.tolist()) if (x, y) == (i, j)) / n for i in range(3) for j in range(3)}
    pa = {i: sum(v for (x, _), v in joint.items() if x == i) for i in range(3)}
    pb = {j: sum(v for (_, y), v in joint.items() if y == j) for j in range(3)}
    hand = sum(v * math.log(v / (pa[i] * pb[j])) for (i, j), v in joint.items() if v > 0)
    assert mutual_information(ca, cb, 3) == pytest.approx(hand, abs=1e-12)
    # a label against itself: its entropy; against a constant: nothing
    entropy = -sum(p * math.log(p) for p in (3 / 8, 2 / 8, 3 / 8))
    assert mutual_information(ca, ca, 3) == pytest.approx(entropy, abs=1e-12)
    assert mutual_information(ca, torch.zeros_like(ca), 3) == 0.0


def test_pair_scores_tell_coupled_pairs_from_shuffled_ones() -> None:
    from unigen_domain.data import DigitsShift, ShiftOptions

    data = DigitsShift().load(ShiftOptions(shift="invert"))
    a = data.test["x"]
    coupled = score_pairs(a, 1 - a, "x", "xt", data.train, data.test, data.info)
    # the true pairs: the 1-NN labels agree as often as on the test split's own pairs
    assert coupled["pair_agreement"] == coupled["pair_agreement_real"] > 0.9
    assert coupled["pair_error"] == 0.0
    assert 0.05 < coupled["pair_agreement_shuffled"] < 0.15
    assert coupled["pair_kappa"] > 0.9
    # 359 pairs of 10 x 10 labels: a shuffled pairing shows about 81 / (2 * 359) = 0.11 nats (Miller-Madow bias)
    assert coupled["pair_label_mi"] > 1.9 and 0.05 < coupled["pair_label_mi_shuffled"] < 0.2
    shuffled = score_pairs(a, (1 - a)[torch.randperm(len(a), generator=torch.Generator().manual_seed(0))], "x", "xt", data.train, data.test, data.info)
    assert abs(shuffled["pair_agreement"] - shuffled["pair_agreement_shuffled"]) < 0.05
    assert abs(shuffled["pair_kappa"]) < 0.05
    assert shuffled["pair_error"] == pytest.approx(shuffled["pair_error_shuffled"], rel=0.05)
    assert shuffled["pair_error_shuffled"] == pytest.approx(coupled["pair_error_shuffled"], abs=1e-9)  # the same samples
    assert shuffled["pair_label_mi"] < 0.2
    # coupled the wrong way: each digit paired with an inverted digit of the next class
    y = data.test["y"].argmax(1)
    gen = torch.Generator().manual_seed(1)
    other = torch.stack([torch.nonzero(y == (c + 1) % 10).flatten()[torch.randint(int((y == (c + 1) % 10).sum()), (1,), generator=gen)][0] for c in y.tolist()])
    wrong = score_pairs(a, 1 - a[other], "x", "xt", data.train, data.test, data.info)
    assert wrong["pair_agreement"] < 0.05 < wrong["pair_agreement_shuffled"]
    assert wrong["pair_label_mi"] > 1.5 > 0.2 > wrong["pair_label_mi_shuffled"]


# --------------------------------------------------------- the CoGAN spec


def test_cogan_compiles_to_two_ports_of_each_network(cli) -> None:
    code, out, err = cli("compile", COGAN)
    assert code == 0, err
    assert "p-trace   z ~ normal; a ~ deterministic(g.a(z)); b ~ deterministic(g.b(z))" in out
    assert "link      adv_a: d.a(q.a) real vs d.a(p.a) fake, objective nonsaturating(r1=1)" in out
    assert "a: [16] -> [64]; b: [16] -> [64]" in out  # g's ports
    assert "a: [64] -> [1]; b: [64] -> [1]" in out  # d's ports


def test_cogan_networks_are_one_parameter_set_each_that_the_optimizer_sees_once() -> None:
    import unigen

    trainer = unigen.Trainer(unigen.compile(COGAN))
    g = trainer.model.nets["g"]
    trunk = _linear(16, 256) + _linear(256, 256)
    branch = _linear(256, 64)  # the output layer only
    assert _count(g) == trunk + 2 * branch
    for runner in trainer.runners:
        assert len(runner.params) == len({id(p) for p in runner.params})
    (gen,) = [r for r in trainer.runners if r.plan.name == "generator"]
    assert {id(p) for p in gen.params} == {id(p) for p in g.parameters()}
    # one z gives both domains: the p-trace calls the two ports on the same value
    trace = trainer.model.trace("p", None, 5)
    z = trace["z"]
    torch.testing.assert_close(trace["a"], g(z, port="a"))
    torch.testing.assert_close(trace["b"], g(z, port="b"))


def test_cogan_trains_five_steps_through_the_cli_and_reports_pair_agreement(cli, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    code, out, err = cli("compile-and-train", COGAN, "--steps", "5", "--out", out_dir, "--quiet")
    assert code == 0, err
    metrics = json.loads((out_dir / "summary.json").read_text())["metrics"]
    for key in ("pair_agreement", "pair_agreement_shuffled", "pair_kappa", "pair_agreement_real", "pair_label_mi", "pair_label_mi_shuffled", "pair_error", "pair_error_shuffled"):
        assert key in metrics, sorted(metrics)
    assert 0 <= metrics["pair_agreement"] <= 1 and 0 <= metrics["pair_agreement_shuffled"] <= 1
    assert metrics["pair_agreement_real"] > 0.9  # the 1-NN classifiers on the true test pairs
    assert metrics["pair_error_shuffled"] > 0


def _cogan_text(**replace: str) -> str:
    text = COGAN.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_a_port_the_network_does_not_have_is_refused(cli, write_spec) -> None:
    spec = write_spec(_cogan_text(**{"net: g.b,": "net: g.c,"}))
    code, out, err = cli("validate", spec)
    assert code == 2
    assert "G023 network `g` (shared) has no port `c`; its ports are `a`, `b`." in err
    assert "edges.1.net" in err


def test_the_metric_does_not_apply_without_two_generated_domains() -> None:
    import unigen

    metric = PairAgreement()
    cyclegan = unigen.Trainer(unigen.compile(ROOT / "specs" / "cyclegan-digits.yaml"))
    assert not metric.applies(cyclegan.model)  # a and b come from the data there
    cogan = unigen.Trainer(unigen.compile(COGAN))
    assert metric.applies(cogan.model)


def test_ports_of_a_shared_trunk_with_different_inputs_are_refused(cli, write_spec, tmp_path: Path) -> None:
    text = _cogan_text(**{"  z: {prior: normal, shape: [16]}\n": "  z: {prior: normal, shape: [16]}\n  w: {prior: normal, shape: [8]}\n", "generative: z -> b": "generative: w -> b"})
    code, out, err = cli("compile-and-train", write_spec(text), "--steps", "1", "--out", tmp_path / "run", "--quiet")
    assert code == 2
    assert "networks.g" in err
    assert "with `share: first` every port feeds the same shared layers, so all take the same input shapes; the edges give `a`: [16] -> [64]; `b`: [8] -> [64]." in err


TIED_HELMHOLTZ = """
unigen: 1
name: tied-helmholtz
data: {source: digits, binarize: true}
variables:
  x: {observed: true, shape: [64]}
  z: {prior: bernoulli, shape: [32]}
networks:
  t: {arch: tied}
edges:
  - {generative: z -> x, net: t.down, dist: bernoulli}
  - {inference: x -> z, net: t.up, dist: DIST}
phases:
  - {name: wake, update: [t], terms: [wake]}
  - {name: sleep, update: [t], terms: [sleep]}
train: {steps: 3, batch_size: 16, seed: 0, log_every: 1}
"""


def test_a_helmholtz_machine_with_tied_weights_trains_through_the_cli(cli, write_spec, tmp_path: Path) -> None:
    import unigen

    spec = write_spec(TIED_HELMHOLTZ.replace("DIST", "bernoulli"))
    code, out, err = cli("compile", spec)
    assert code == 0, err
    assert "x ~ bernoulli(t.down(z))" in out and "z ~ bernoulli(t.up(x))" in out
    assert "up: [64] -> [32]; down: [32] -> [64]" in out
    trainer = unigen.Trainer(unigen.compile(spec))
    assert _count(trainer.model.nets["t"]) == 64 * 32 + 32 + 64
    code, out, err = cli("compile-and-train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err


def test_tied_weights_under_a_gaussian_edge_are_refused(cli, write_spec, tmp_path: Path) -> None:
    spec = write_spec(TIED_HELMHOLTZ.replace("DIST", "normal").replace("prior: bernoulli", "prior: normal"))
    code, out, err = cli("compile-and-train", spec, "--out", tmp_path / "run", "--quiet")
    assert code == 2
    assert "networks.t" in err
    assert "port `up` maps [64] -> [64], so W is 64 x 64 and port `down` (W^T) maps 64 elements to 64; but its edge maps [32] -> [64]. The `up` edge asks for 2 outputs per element" in err
