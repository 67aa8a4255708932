"""Framework overhead: unigen's `Trainer.step()` against the same model as a plain PyTorch loop.

    python benchmarks/overhead.py [--steps N] [--repeats R] [--threads T]

For each shipped spec the plain loop uses the same architectures (nn.Sequential of the
spec's Linear/ReLU widths, initialised with the Trainer's weights), the same batch size,
optimizer settings and training tensors (`trainer.model.dataset.train`), batches drawn by
a random permutation per epoch as unigen's `Batches` does, and the same per-step work:

- VAE: one ELBO step, Bernoulli likelihood (BCE with logits), analytic Gaussian KL.
- GAN: a D step (real batch, fresh z, generator run without grad, non-saturating loss),
  then a G step (fresh z; D's parameters frozen, as unigen freezes what a phase does not
  update, so neither loop computes gradients it throws away).

Before timing, both loops are run a few steps from the same seeds and must produce the
same losses: the comparison is like for like. Timing alternates blocks of `--steps`
steps of each loop (order flipped every repeat) after a warm-up, and reports the median
time per step over `--repeats` blocks, and as the ratio the median over adjacent block
pairs of unigen/plain (a pair shares the machine's state, so slow drift cancels). Results
go to stdout and benchmarks/results/overhead.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import unigen
from unigen import Trainer

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"vae-digits": ROOT / "specs" / "vae-digits.yaml", "gan-ring": ROOT / "specs" / "gan-ring.yaml", "dcgan-digits": ROOT / "specs" / "dcgan-digits.yaml"}
# Settings the plain loops do not reproduce, switched off in both loops.
OVERRIDES = {"dcgan-digits": ["networks.generator.ema=null"]}  # the plain loop keeps no moving average
RESULTS = ROOT / "benchmarks" / "results" / "overhead.md"


# ------------------------------------------------------------------ plain pieces


def mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def plain_net(trainer: Trainer, name: str) -> nn.Module:
    """The spec's MLP as a plain nn.Sequential, starting from the Trainer's initial weights;
    any other architecture (DCGAN's convolutions) as a copy of the Trainer's module, called
    directly by the plain loop."""
    program = trainer.program
    if program.networks[name].arch != "mlp":
        return copy.deepcopy(trainer.model.nets[name])
    arch = program.networks[name].options
    assert program.networks[name].arch == "mlp" and arch.activation == "relu", "the plain loop knows ReLU MLPs only"
    assert not arch.batchnorm and not arch.dropout and arch.out_activation == "none"
    inputs, output = program.networks[name].inputs, program.networks[name].output
    n_in = sum(int(torch.Size(s).numel()) for s in inputs)
    net = mlp(n_in, list(arch.hidden), int(torch.Size(output).numel()))
    net.load_state_dict(trainer.model.nets[name].body.state_dict())
    return net.to(trainer.device)


class PlainBatches:
    """A random permutation per epoch, consumed in order (as unigen's `Batches`)."""

    def __init__(self, x: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.x, self.n, self.generator = x, len(x), generator
        self.batch_size = min(batch_size, self.n)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = self.n

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator).to(self.x.device)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.x.index_select(0, idx)


def adam(params: list[nn.Parameter], trainer: Trainer, phase: int) -> torch.optim.Optimizer:
    plan = trainer.program.phases[phase]
    assert plan.optim == "adam"
    opts = dict(plan.optim_options)
    return torch.optim.Adam(params, lr=opts.pop("lr"), **opts)


def plain_vae(trainer: Trainer) -> tuple[Callable[[], None], Callable[[], list[float]]]:
    spec = trainer.program
    enc, dec = plain_net(trainer, "encoder"), plain_net(trainer, "decoder")
    opt = adam([*enc.parameters(), *dec.parameters()], trainer, 0)
    x_all = trainer.model.dataset.train[trainer.model.fields["x"]]
    batches = PlainBatches(x_all, spec.train.batch_size, torch.Generator().manual_seed(spec.train.seed))
    last: list[float] = []

    def step() -> None:
        x = batches.next()
        mu, logvar = enc(x).chunk(2, dim=1)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn_like(std)
        rec = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + std.pow(2) - 1 - logvar).sum(1)
        loss = (rec + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last[:] = [loss.detach()]

    return step, lambda: [float(v) for v in last]


def plain_gan(trainer: Trainer) -> tuple[Callable[[], None], Callable[[], list[float]]]:
    spec = trainer.program
    gen, disc = plain_net(trainer, "generator"), plain_net(trainer, "discriminator")
    opt_d = adam(list(disc.parameters()), trainer, 0)
    opt_g = adam(list(gen.parameters()), trainer, 1)
    x_all = trainer.model.dataset.train[trainer.model.fields["x"]]
    bs = spec.train.batch_size
    batches = PlainBatches(x_all, bs, torch.Generator().manual_seed(spec.train.seed))
    z_shape = tuple(spec.variables["z"].shape)
    device = trainer.device
    d_params = list(disc.parameters())
    gamma = float(spec.links()[0].info.options.get("r1", 0.0))
    last: list[torch.Tensor] = []

    def step() -> None:
        # D step: real batch, fresh z, the generator without grad.
        for p in d_params:
            p.requires_grad_(True)
        real = batches.next()
        z = torch.randn(len(real), *z_shape, device=device)
        with torch.no_grad():
            fake = gen(z)
        if gamma:
            real = real.detach().requires_grad_(True)
        real_logits = disc(real)
        d_loss = F.softplus(-real_logits).mean() + F.softplus(disc(fake)).mean()
        if gamma:  # R1: gamma/2 * E||grad D(real)||^2
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            d_loss = d_loss + 0.5 * gamma * grad.flatten(1).pow(2).sum(1).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # G step: fresh z, D frozen (its gradients would be thrown away).
        for p in d_params:
            p.requires_grad_(False)
        z = torch.randn(bs, *z_shape, device=device)
        g_loss = F.softplus(-disc(gen(z))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        last[:] = [d_loss.detach(), g_loss.detach()]

    return step, lambda: [float(v) for v in last]


PLAIN = {"vae-digits": plain_vae, "gan-ring": plain_gan, "dcgan-digits": plain_gan}


# -------------------------------------------------------------------- harness


def make_pair(name: str) -> tuple[Callable[[], None], Callable[[], None], Callable[[], list[float]], Callable[[], list[float]]]:
    """Both loops, from the same seed; the plain one starts from the Trainer's weights."""
    registry = unigen.default_registry()
    program = unigen.compile(SPECS[name], ["train.device=cpu", *OVERRIDES.get(name, [])], registry=registry)
    trainer = Trainer(program)
    step, plain_last = PLAIN[name](trainer)

    def unigen_last() -> list[float]:
        return list(trainer.losses().values())

    return trainer.step, step, unigen_last, plain_last


def check_parity(name: str, steps: int = 5) -> None:
    """The two loops compute the same losses, step for step, from the same seeds."""
    u_step, p_step, u_last, p_last = make_pair(name)
    seed = 1234
    for i in range(steps):
        torch.manual_seed(seed + i)
        u_step()
        torch.manual_seed(seed + i)
        p_step()
        u, p = u_last(), p_last()
        assert len(u) == len(p) and all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for a, b in zip(u, p)), f"{name}: step {i}: unigen losses {u} != plain {p}"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_block(step: Callable[[], None], n: int, clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    for _ in range(n):
        step()
    return (clock() - start) / n


def measure(name: str, steps: int, repeats: int, warmup: int, clock: Callable[[], float]) -> tuple[float, float, float]:
    """Median ms/step of each loop, and the median of the ratios of adjacent block pairs."""
    u_step, p_step, _, _ = make_pair(name)
    time_block(u_step, warmup)
    time_block(p_step, warmup)
    u_times, p_times = [], []
    for r in range(repeats):
        order = [(u_step, u_times), (p_step, p_times)]
        for step, out in order if r % 2 == 0 else order[::-1]:
            out.append(time_block(step, steps, clock))
    ratios = [u / p for u, p in zip(u_times, p_times)]
    return statistics.median(u_times), statistics.median(p_times), statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=21, help="timed blocks per loop (median taken)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed steps of each loop first")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both loops")
    ap.add_argument("--clock", choices=list(CLOCKS), default="wall", help="wall time, or the process's CPU time (steadier on a busy machine)")
    ap.add_argument("--models", nargs="*", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for name in args.models:
        check_parity(name)
        u, p, ratio = measure(name, args.steps, args.repeats, args.warmup, CLOCKS[args.clock])
        rows.append(f"| {name} | {u * 1e3:.3f} | {p * 1e3:.3f} | {ratio:.3f} |")
    table = "\n".join(["| model | unigen ms/step | plain ms/step | ratio |", "|---|---:|---:|---:|", *rows])
    setup = (
        f"torch {torch.__version__}, {platform.machine()}, cpu, {args.threads} thread(s), {args.clock} clock; "
        f"median of {args.repeats} interleaved blocks of {args.steps} steps after {args.warmup} warm-up steps; "
        f"ratio: median over adjacent block pairs of unigen/plain; load average before: {load}"
    )
    print(table)
    print()
    print(setup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# unigen overhead: `Trainer.step()` vs a plain PyTorch loop\n\n"
        f"`python benchmarks/overhead.py --steps {args.steps} --repeats {args.repeats} --warmup {args.warmup} --threads {args.threads} --clock {args.clock}`\n\n"
        f"{table}\n\n{setup}.\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
