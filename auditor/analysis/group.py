"""The `minority` detector: a compact minority group in the multi-layer profile.

BYE looks at one averaged score and flags its low side. A backdoor need not
lower entropy (docs/method.md, "Known weaknesses"): on our tiny LLaVA the triggered
samples sit at near-uniform entropy in the late layers. What a backdoor does
imply is a group of samples that the model treats alike: a minority, unusually
compact, separated from the rest. This module finds the best such group in the
per-layer features jointly, whatever the direction, and measures how credible
it is. Pure functions; the verdict is decided in verdict.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .cluster import Clustering
from .mixture import Mixture1D, bsi, fit_rows


def robust_standardise(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D): (x - median) / (1.4826 MAD) per column; a constant
    column becomes 0 (MAD 0 -> scale 1). Robust, so a poisoned minority does
    not set the scale."""
    cols = np.ascontiguousarray(x.T)  # (D, N): a median over contiguous values is several times faster
    med = np.array([np.median(c) for c in cols])
    mad = np.array([np.median(np.abs(c - m)) for c, m in zip(cols, med)]) * 1.4826
    return (x - med) / np.where(mad > 1e-12, mad, 1.0)


@dataclass(frozen=True)
class GroupFit:
    direction: np.ndarray  # (D,) unit Fisher direction from the rest towards the group
    clustering: Clustering  # scores on the discriminant (low = group), the group, the projected components
    separation: float  # BSI of the two components projected on the discriminant
    weight: float  # mixture weight of the group component
    spread_ratio: float  # (det cov_group / det cov_rest)^(1/2D): the group's sd relative to the rest's


def fit_group(z: np.ndarray, seed: int = 0, fit_sample: int | None = None) -> GroupFit:
    """Best two-group split of standardised features z (N, D), N >= 2.

    A 2-component full-covariance Gaussian mixture (fitted on at most
    `fit_sample` rows drawn with `seed`, mixture.fit_rows) proposes the split; its smaller component
    is the candidate group, and the samples it claims (posterior > 1/2) are the
    group. Every sample is projected on the Fisher direction between the
    components (pooled covariance), oriented so that the group lies low: score
    (N,). Separation is the BSI of the two components projected on that
    direction (each with its own variance); spread is the ratio of the
    components' covariance volumes, as a geometric-mean sd ratio, so it does
    not depend on the direction: the Fisher direction is the one along which
    the majority is narrowest, so along it any minority looks wide.
    """
    from sklearn.mixture import GaussianMixture  # ~1 s to import: not on the CLI's start-up path

    gmm = GaussianMixture(2, covariance_type="full", n_init=3, reg_covar=1e-4, random_state=seed).fit(
        fit_rows(z, fit_sample, seed))
    k = int(np.argmin(gmm.weights_))
    j = 1 - k
    d = z.shape[1]
    pooled = gmm.weights_[k] * gmm.covariances_[k] + gmm.weights_[j] * gmm.covariances_[j]
    w = np.linalg.solve(pooled + 1e-6 * np.eye(d), gmm.means_[k] - gmm.means_[j])
    w = w / (np.linalg.norm(w) or 1.0)
    scores = -(z @ w)  # the group projects high on w, so low here
    flagged = gmm.predict(z) == k
    means = (float(-(w @ gmm.means_[k])), float(-(w @ gmm.means_[j])))
    variances = (float(w @ gmm.covariances_[k] @ w), float(w @ gmm.covariances_[j] @ w))
    mixture = Mixture1D(means=means, variances=variances,
                        weights=(float(gmm.weights_[k]), float(gmm.weights_[j])),
                        converged=bool(gmm.converged_))
    lo = scores[flagged].max() if flagged.any() else scores.min()
    hi = scores[~flagged].min() if (~flagged).any() else scores.max()
    clustering = Clustering(scores=scores, flagged=flagged, mixture=mixture, threshold=float((lo + hi) / 2))
    logdet = [np.linalg.slogdet(c)[1] for c in gmm.covariances_]
    return GroupFit(direction=w, clustering=clustering, separation=bsi(mixture),
                    weight=float(gmm.weights_[k]),
                    spread_ratio=float(np.exp((logdet[k] - logdet[j]) / (2 * d))))


def null_separations(n: int, d: int, seed: int = 0, repeats: int = 5, cap: int = 5_000) -> tuple[float, ...]:
    """Separations fit_group reports on unimodal data: standard normal samples
    of min(n, cap) rows x d columns, `repeats` times. What a split of one
    Gaussian cloud looks like at this size and dimension."""
    def separation(r: int) -> float:
        g = np.random.default_rng([seed, 7919, r]).standard_normal((min(n, cap), d))
        return float(fit_group(g, seed=seed + r).separation)

    with ThreadPoolExecutor(max_workers=2) as pool:  # independent fits, numpy without the GIL
        return tuple(pool.map(separation, range(repeats)))


@dataclass(frozen=True)
class InstructionMatch:
    """How far the instruction text alone explains a group of samples."""

    jaccard: float  # |group & covered| / |group | covered|; 0.0 when no instruction is mostly in the group
    texts: tuple[str, ...]  # the instructions mostly in the group (sorted); `covered` is all their samples

    def to_dict(self) -> dict:
        return {"jaccard": self.jaccard, "texts": list(self.texts)}


def instruction_match(group_prompts: Iterable[str], all_prompts: Iterable[str],
                      min_class: int) -> InstructionMatch:
    """The instructions with at least `min_class` samples of which more than half
    are in the group, and the Jaccard index between the group and all the
    samples carrying them: 1.0 when the group is exactly those instructions'
    samples. `group_prompts`: the group's instructions (one per sample, with
    repeats); `all_prompts`: every analysed sample's, the group's included.

    Rarer instructions explain nothing: with one text per sample (free-form
    questions), every text would be trivially "mostly in" or "mostly out".
    Counted with hashes, not sorted: a million strings take a fraction of a
    second.
    """
    inside, total = Counter(group_prompts), Counter(all_prompts)
    texts = sorted(t for t, k in inside.items() if total[t] >= min_class and 2 * k > total[t])
    both = sum(inside[t] for t in texts)
    union = sum(inside.values()) + sum(total[t] for t in texts) - both
    return InstructionMatch(both / union if union else 0.0, tuple(texts))


@dataclass(frozen=True)
class LayerContrast:
    layer: int
    mean_group: float
    mean_rest: float
    effect: float  # Cohen's d, (group - rest) / pooled sd; > 0: the group has higher entropy
    weight: float  # the layer's component of the discriminant direction

    def to_dict(self) -> dict:
        return {"layer": self.layer, "mean_group": self.mean_group, "mean_rest": self.mean_rest,
                "effect": self.effect, "weight": self.weight}


def layer_contrast(x: np.ndarray, group: np.ndarray, direction: np.ndarray) -> tuple[LayerContrast, ...]:
    """Per column of x (N, L): mean of the group (bool mask (N,)) vs the rest,
    Cohen's d and the discriminant weight; says which layers separate the group."""
    a, b = x[group], x[~group]
    out = []
    for layer in range(x.shape[1]):
        ma = float(a[:, layer].mean()) if len(a) else float("nan")
        mb = float(b[:, layer].mean()) if len(b) else float("nan")
        va = a[:, layer].var(ddof=1) if len(a) > 1 else 0.0
        vb = b[:, layer].var(ddof=1) if len(b) > 1 else 0.0
        dof = max(len(a) + len(b) - 2, 1)
        sd = float(np.sqrt(((len(a) - 1) * va + (len(b) - 1) * vb) / dof)) if dof else 0.0
        out.append(LayerContrast(layer, ma, mb, (ma - mb) / sd if sd > 0 else 0.0, float(direction[layer])))
    return tuple(out)
