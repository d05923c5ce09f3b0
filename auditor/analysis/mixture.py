"""Two-component 1-D Gaussian mixtures and the bimodal separation index (BSI)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mixture1D:
    """A fitted 2-component mixture, components sorted by mean (index 0 = lower)."""

    means: tuple[float, float]
    variances: tuple[float, float]
    weights: tuple[float, float]
    converged: bool

    def to_dict(self) -> dict:
        return {"means": list(self.means), "variances": list(self.variances),
                "weights": list(self.weights), "converged": self.converged}


def fit_rows(x: np.ndarray, cap: int | None, seed: int = 0) -> np.ndarray:
    """The rows a mixture is fitted on: all of x (N, ...) when N <= cap (or cap
    is None), else `cap` rows drawn without replacement with `seed`, in input
    order. Two components need nowhere near a million points; every row is
    still assigned by the fitted mixture."""
    if cap is None or len(x) <= cap:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), cap, replace=False))]


def fit_mixture(x: np.ndarray, seed: int = 0, fit_sample: int | None = None) -> tuple[Mixture1D, np.ndarray]:
    """Fit GaussianMixture(n_components=2, random_state=seed) to x of shape (n,), n >= 2
    (to at most `fit_sample` of its points, fit_rows).

    Returns the mixture (components sorted by mean) and the hard assignment of
    each point, shape (n,), where 0 means the lower-mean component.
    """
    from sklearn.mixture import GaussianMixture  # ~1 s to import: not on the CLI's start-up path

    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, random_state=seed).fit(fit_rows(x, fit_sample, seed))
    order = np.argsort(gmm.means_.ravel())
    rank = np.empty(2, dtype=np.int64)
    rank[order] = np.arange(2)
    mix = Mixture1D(
        means=tuple(float(v) for v in gmm.means_.ravel()[order]),
        variances=tuple(float(v) for v in gmm.covariances_.ravel()[order]),
        weights=tuple(float(v) for v in gmm.weights_[order]),
        converged=bool(gmm.converged_),
    )
    return mix, rank[gmm.predict(x)]


def bsi(mix: Mixture1D) -> float:
    """Bimodal separation index |mu1 - mu2| / sqrt(s1^2 + s2^2) (paper's definition)."""
    return abs(mix.means[1] - mix.means[0]) / float(np.sqrt(sum(mix.variances)))


def reference_separated(mix: Mixture1D) -> bool:
    """The reference code's stricter rule: |mu1 - mu2| > 2 (s1 + s2)."""
    s1, s2 = np.sqrt(mix.variances)
    return abs(mix.means[1] - mix.means[0]) > 2 * (s1 + s2)
