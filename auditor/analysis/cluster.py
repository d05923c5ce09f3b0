"""Stage 3: score per sample, 2-GMM over the scores, low-mean cluster flagged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mixture import Mixture1D, fit_mixture


@dataclass(frozen=True)
class Clustering:
    scores: np.ndarray  # (N,) mean entropy over the sensitive layers; low = suspicious
    flagged: np.ndarray  # (N,) bool, True in the lower-mean component
    mixture: Mixture1D
    threshold: float  # decision boundary between the two components on the score axis


def sensitive_score(entropy: np.ndarray, layers: list[int]) -> np.ndarray:
    """Mean over the sensitive layers: (N, L) -> (N,). Lower means more collapsed."""
    return entropy[:, layers].mean(axis=1)


def cluster_scores(scores: np.ndarray, seed: int = 0, fit_sample: int | None = None) -> Clustering:
    """Hard 2-GMM assignment of scores (N,), N >= 2 (fitted on at most
    `fit_sample` of them); the lower-mean component is flagged."""
    mix, assign = fit_mixture(scores, seed, fit_sample)
    flagged = assign == 0
    # Boundary: the largest flagged score and smallest kept score bracket it.
    lo = scores[flagged].max() if flagged.any() else scores.min()
    hi = scores[~flagged].min() if (~flagged).any() else scores.max()
    return Clustering(scores=scores, flagged=flagged, mixture=mix, threshold=float((lo + hi) / 2))
