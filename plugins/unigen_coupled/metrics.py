"""`pair_agreement`: whether coupled generators give corresponding pairs from the same latent.

CoGAN (Liu & Tuzel 2016) learns a joint distribution of two domains from unpaired data: two
generators share their first layers, so the same z should give a pair that corresponds (a
digit and its inversion). The metric draws `samples` values of the shared latents, generates
both domains from each, and labels each image with a 1-nearest-neighbour classifier fit on its
own domain's training images (labels `y` and `yt`, which the dataset keeps for scoring). Its
value is the fraction of pairs whose two labels agree.

Agreement alone says little: two generators that each draw digits of any class agree by
chance. The floor is the agreement of the same samples with the second domain's rows shuffled,
taken in expectation over all permutations: sum_k p_a(k) p_b(k), with p_a and p_b the
generated classes' frequencies in each domain (exact; no random permutation is drawn). A value
near the floor means no coupling; `pair_kappa` = (agreement - floor) / (1 - floor) is Cohen's
kappa between the two labels (0: chance, 1: every pair agrees). `pair_agreement_real` is the
same classifiers' agreement on the test split's true pairs, a ceiling.

Agreement asks for one correspondence, the dataset's (a digit and its own inversion). Two
generators may be coupled through z and still pair each digit with another one (z's region
of 3s giving inverted 8s). `pair_label_mi` is the mutual information (nats) between the two
labels, which counts any correspondence; `pair_label_mi_shuffled` is its mean over shuffled
pairings (a finite sample's bias, not 0). Agreement near its floor with mutual information
above its floor: coupled, but not as the dataset pairs the domains.

Where the test split pairs the domains row by row (`info["paired"]`), `pair_error` measures the
pixels too: the mean absolute difference per element between G_b(z) and the counterpart of
G_a(z), i.e. the test image of domain b paired with the test image of domain a nearest to
G_a(z) (for an inversion, about 1 - G_a(z)); `pair_error_shuffled` is its expectation under a
shuffled pairing (the mean over all pairs of rows). Lower is better for these two.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import torch
from pydantic import Field
from unigen_cond.metrics import nearest_labels

from unigen.api.contexts import GraphView, ModelView
from unigen.api.kinds import Metric, Options


class PairOptions(Options):
    samples: int = Field(2000, gt=1, le=100_000, description="draws of the shared latents, each giving one pair")


def latent_roots(graph: GraphView, var: str) -> set[str]:
    """The variables sampled from their priors that `var`'s value depends on in the p-trace."""
    out: set[str] = set()
    stack, seen = [var], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        source = graph.p_source(v)
        if source == "prior":
            out.add(v)
        elif source == "edge":
            e = graph.into(v, "generative")
            if e is not None:
                stack.extend(e.parents)
    return out


def coupled_pairs(graph: GraphView, info: dict[str, Any]) -> list[tuple[str, str]]:
    """(a, b): two observed variables the p-trace generates from common latents, whose data
    fields the dataset relates as source and target domain (`info["target"]`) or as row-wise
    pairs (`info["paired"]`); a is the source domain where the dataset says which is."""
    target = info.get("target") if isinstance(info.get("target"), dict) else {}
    paired = info.get("paired") if isinstance(info.get("paired"), dict) else {}
    generated = [v for v, spec in graph.variables.items() if spec.observed and graph.p_source(v) == "edge"]
    out = []
    for a, b in combinations(generated, 2):
        fa, fb = graph.data_field(a), graph.data_field(b)
        if target.get(fb) == fa:
            a, b, fa, fb = b, a, fb, fa
        if target.get(fa) != fb and paired.get(fa) != fb:
            continue
        if latent_roots(graph, a) & latent_roots(graph, b):
            out.append((a, b))
    return out


def label_fields(info: dict[str, Any], fa: str, fb: str, train: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """The label fields of the two domains: the entry of `info["target"]` beside the images'."""
    target = info.get("target") if isinstance(info.get("target"), dict) else {}
    for la, lb in target.items():
        if la != fa and lb != fb and la in train and lb in train and len(train[la]) == len(train[fa]) and len(train[lb]) == len(train[fb]):
            return la, lb
    return None


def _classes(labels: torch.Tensor) -> torch.Tensor:
    return labels.argmax(1) if labels.dim() == 2 else labels.long().flatten()


def chance_agreement(ca: torch.Tensor, cb: torch.Tensor) -> float:
    """The expected fraction of agreeing pairs when b's rows are permuted uniformly at random:
    sum_k (n_a(k) / n) (n_b(k) / n)."""
    k = int(max(ca.max(), cb.max())) + 1
    pa = torch.bincount(ca, minlength=k).double() / len(ca)
    pb = torch.bincount(cb, minlength=k).double() / len(cb)
    return float((pa * pb).sum())


def mutual_information(ca: torch.Tensor, cb: torch.Tensor, k: int) -> float:
    """The mutual information (nats) of the empirical joint distribution of two label vectors:
    sum_ij p(i, j) log(p(i, j) / (p_a(i) p_b(j)))."""
    joint = torch.bincount(ca * k + cb, minlength=k * k).double().view(k, k) / len(ca)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    seen = joint > 0
    return float((joint[seen] * (joint[seen] / outer[seen]).log()).sum())


def shuffled_mutual_information(ca: torch.Tensor, cb: torch.Tensor, k: int, draws: int = 20) -> float:
    """The mean mutual information of the same labels with b's rows permuted (`draws` fixed
    permutations): what a finite sample shows without any coupling (it is not 0)."""
    gen = torch.Generator().manual_seed(0)
    return sum(mutual_information(ca, cb[torch.randperm(len(cb), generator=gen).to(cb.device)], k) for _ in range(draws)) / draws


def mean_pairwise_l1(x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> float:
    """The mean absolute difference per element over all pairs (x_i, y_j)."""
    total = 0.0
    for start in range(0, len(x), chunk):
        total += float(torch.cdist(x[start : start + chunk].double(), y.double(), p=1).sum())
    return total / (len(x) * len(y) * x.shape[1])


class PairAgreement(Metric):
    Options = PairOptions
    doc = "coupled generators (CoGAN): the fraction of pairs generated from the same latent whose two images a 1-nearest-neighbour classifier of each domain gives the same label (`pair_agreement`), its floor under a shuffled pairing (`pair_agreement_shuffled`), Cohen's kappa between the two (`pair_kappa`), the agreement on true test pairs (`pair_agreement_real`), the labels' mutual information in nats (`pair_label_mi`: any correspondence, not only the dataset's) and its shuffled floor; with a paired test split, the pixel error against the paired counterpart (`pair_error`, lower is better) and its shuffled floor"

    def _pair(self, model: ModelView) -> tuple[str, str] | None:
        info = model.dataset.info if isinstance(model.dataset.info, dict) else {}
        pairs = coupled_pairs(model.program.graph, info)
        return pairs[0] if pairs else None

    def applies(self, model: ModelView) -> bool:
        pair = self._pair(model)
        if pair is None:
            return False
        graph, info = model.program.graph, model.dataset.info
        fa, fb = graph.data_field(pair[0]), graph.data_field(pair[1])
        labels = fa in model.dataset.train and fb in model.dataset.train and label_fields(info, fa, fb, model.dataset.train) is not None
        paired = isinstance(info.get("paired"), dict) and info["paired"].get(fa) == fb and fa in model.dataset.test and fb in model.dataset.test
        return labels or paired

    def generate_pairs(self, model: ModelView, a: str, b: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (G_a, G_b), each from one draw of the p-trace: the same latents for both.
        Each is its edge's mean where it has one (the image, not a noisy sample of it)."""
        graph, test = model.program.graph, model.dataset.test
        n_test = len(next(iter(test.values()))) if test else 0
        rows_a, rows_b = [], []
        for start in range(0, n, 500):
            k = min(500, n - start)
            batch = None
            if n_test:  # the p-trace may read data (a label it conditions on): the test rows, in turn
                index = torch.arange(start, start + k, device=model.device) % n_test
                batch = model.observed_batch({f: t[index] for f, t in test.items()})
            trace = model.trace("p", batch, k)
            for var, rows in ((a, rows_a), (b, rows_b)):
                e = graph.into(var, "generative")
                try:
                    rows.append(trace.cond(e).mean.flatten(1))
                except NotImplementedError:
                    rows.append(trace[var].flatten(1))
        return torch.cat(rows_a), torch.cat(rows_b)

    @torch.no_grad()
    def compute(self, model: ModelView) -> dict[str, float]:
        pair = self._pair(model)
        assert pair is not None
        a, b = pair
        graph, info, train, test = model.program.graph, model.dataset.info, model.dataset.train, model.dataset.test
        fa, fb = graph.data_field(a), graph.data_field(b)
        o = self.options or PairOptions()
        was = model.training
        model.eval()
        try:
            ga, gb = self.generate_pairs(model, a, b, o.samples)
        finally:
            model.train(was)
        return score_pairs(ga, gb, fa, fb, train, test, info)


def score_pairs(ga: torch.Tensor, gb: torch.Tensor, fa: str, fb: str, train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, float]:
    """The metric's values for generated pairs (row i of ga with row i of gb) of the domains
    whose data fields are fa and fb."""
    ga, gb = ga.flatten(1), gb.flatten(1)
    out: dict[str, float] = {}
    paired = fa in test and fb in test and isinstance(info.get("paired"), dict) and info["paired"].get(fa) == fb
    labels = label_fields(info, fa, fb, train) if fa in train and fb in train else None
    if labels is not None:
        la, lb = labels
        ca = nearest_labels(train[fa], _classes(train[la]), ga)
        cb = nearest_labels(train[fb], _classes(train[lb]), gb)
        agree = float((ca == cb).double().mean())
        floor = chance_agreement(ca, cb)
        out["pair_agreement"] = agree
        out["pair_agreement_shuffled"] = floor
        out["pair_kappa"] = (agree - floor) / (1 - floor) if floor < 1 else 0.0
        k = int(max(ca.max(), cb.max())) + 1
        out["pair_label_mi"] = mutual_information(ca, cb, k)
        out["pair_label_mi_shuffled"] = shuffled_mutual_information(ca, cb, k)
        if paired:
            ta = nearest_labels(train[fa], _classes(train[la]), test[fa])
            tb = nearest_labels(train[fb], _classes(train[lb]), test[fb])
            out["pair_agreement_real"] = float((ta == tb).double().mean())
    if paired:
        xa, xb = test[fa].flatten(1), test[fb].flatten(1)
        nearest = nearest_labels(xa, torch.arange(len(xa), device=xa.device), ga)
        counterpart = xb[nearest]
        out["pair_error"] = float((gb - counterpart).abs().double().mean())
        out["pair_error_shuffled"] = mean_pairwise_l1(counterpart, gb)
    return out
