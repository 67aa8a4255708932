"""Sample-quality statistics on feature vectors: plain functions of two sets of rows.

Every function takes `real` (N, D) and `fake` (M, D) feature tensors (or class
probabilities) and returns Python floats; the arithmetic is float64.

- FID (Heusel et al. 2017): ||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)). The trace
  of the square root is the sum of the square roots of the eigenvalues of S_r^(1/2) S_f S_r^(1/2),
  which is symmetric positive semi-definite, so two symmetric eigendecompositions suffice.
- KID (Binkowski et al. 2018): the unbiased estimate of MMD^2 with the kernel
  k(a, b) = (a.b / D + 1)^3.
- Precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
  around its points, of radius the distance to the k-th nearest other point of the same set.
  Precision: the fraction of fake points inside the real manifold; recall: the fraction of real
  points inside the fake manifold.
- Density and coverage (Naeem et al. 2020), on the real balls only: density is the mean number
  of real balls a fake point falls in, divided by k; coverage is the fraction of real balls
  that hold at least one fake point.
- Classifier score ("inception score", Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)).
- Class entropy: the entropy of the histogram of predicted classes (log K for a uniform one).
"""

from __future__ import annotations

from itertools import permutations

import torch


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.float64).reshape(len(x), -1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    a, b = _f64(real), _f64(fake)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], a.shape[1]), torch.cov(b.T).reshape(b.shape[1], b.shape[1])
    root = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root @ cov_b @ root).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(value.clamp(min=0))


def kid(real: torch.Tensor, fake: torch.Tensor) -> float:
    a, b = _f64(real), _f64(fake)
    d = a.shape[1]
    m, n = len(a), len(b)

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x @ y.T / d + 1).pow(3)

    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    within_a = (kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
    within_b = (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1))
    return float(within_a + within_b - 2 * kab.mean())


def kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    d = torch.cdist(x, x)
    return d.topk(k + 1, dim=1, largest=False).values[:, k]  # column 0 is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    a, b = _f64(real), _f64(fake)
    ra, rb = kth_neighbour_radius(a, k), kth_neighbour_radius(b, k)
    d = torch.cdist(a, b)  # (real, fake)
    precision = (d <= ra[:, None]).any(0).double().mean()
    recall = (d <= rb[None, :]).any(1).double().mean()
    return float(precision), float(recall)


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    a, b = _f64(real), _f64(fake)
    ra = kth_neighbour_radius(a, k)
    inside = torch.cdist(a, b) <= ra[:, None]  # (real ball i, fake point j)
    density = inside.sum(0).double().mean() / k
    coverage = inside.any(1).double().mean()
    return float(density), float(coverage)


def classifier_score(probs: torch.Tensor) -> float:
    p = probs.detach().to(torch.float64).clamp(min=1e-12)
    marginal = p.mean(0, keepdim=True)
    return float((p * (p.log() - marginal.log())).sum(1).mean().exp())


def class_entropy(predicted: torch.Tensor, classes: int) -> float:
    counts = torch.bincount(predicted.reshape(-1).long(), minlength=classes).double()
    p = counts / counts.sum()
    nz = p > 0
    return float(-(p[nz] * p[nz].log()).sum())


def matched_accuracy(codes: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of the best one-to-one assignment of code values to labels (Hungarian)."""
    codes, labels = codes.reshape(-1).long().cpu(), labels.reshape(-1).long().cpu()
    k, l_ = int(codes.max()) + 1, int(labels.max()) + 1
    counts = torch.zeros(k, l_, dtype=torch.long)
    counts.index_put_((codes, labels), torch.ones_like(codes), accumulate=True)
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # scipy comes with scikit-learn; this is a fallback for small tables only
        return _brute_force(counts) / len(codes)
    rows, cols = linear_sum_assignment(counts.numpy(), maximize=True)
    return float(counts[torch.as_tensor(rows), torch.as_tensor(cols)].sum()) / len(codes)


def _brute_force(counts: torch.Tensor) -> float:
    """The best assignment by trying every permutation (up to 8 values), else greedily: the
    largest remaining count first. Greedy can miss the optimum, so it is a lower bound; scipy,
    which scikit-learn installs, makes this path a fallback only."""
    k, l_ = counts.shape
    if max(k, l_) > 8:
        left, total = counts.clone(), 0
        for _ in range(min(k, l_)):
            flat = int(left.argmax())
            r, c = divmod(flat, l_)
            total += int(left[r, c])
            left[r, :] = -1
            left[:, c] = -1
        return float(total)
    size = max(k, l_)
    padded = torch.zeros(size, size, dtype=torch.long)
    padded[:k, :l_] = counts
    return float(max(sum(int(padded[i, p[i]]) for i in range(size)) for p in permutations(range(size))))


__all__ = ["fid", "kid", "precision_recall", "density_coverage", "classifier_score", "class_entropy", "matched_accuracy"]
