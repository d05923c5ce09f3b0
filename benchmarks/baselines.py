"""Baseline poison detectors of the detection benchmark, as pure functions.

Each returns a boolean flag per sample (True = removed). The representation
for Spectral Signatures and Activation Clustering is the fine-tuned decoder's
last hidden state at the query position (the last prompt position), grouped by
answer text: VQA has no class labels, and the answer is what a backdoor
changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA


def random_drop(n: int, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """(n,) bool: a uniformly random `fraction` of the samples."""
    flags = np.zeros(n, dtype=bool)
    flags[np.random.default_rng(seed).choice(n, size=round(fraction * n), replace=False)] = True
    return flags


def _groups(labels: Sequence[str]) -> dict[str, np.ndarray]:
    labels = np.asarray(labels, dtype=object)
    return {g: np.flatnonzero(labels == g) for g in sorted(set(labels.tolist()))}


def spectral_signatures(reps: np.ndarray, labels: Sequence[str], epsilon: float = 0.1) -> np.ndarray:
    """Tran et al. 2018. reps (n, d), labels (n,) -> (n,) bool.

    Per label group: centre the representations, project on the top right
    singular vector, and remove the 1.5 * epsilon share with the largest
    squared projection (`epsilon`: the defender's upper bound on the poison rate).
    """
    flags = np.zeros(len(reps), dtype=bool)
    for idx in _groups(labels).values():
        k = int(np.floor(1.5 * epsilon * len(idx)))
        if k == 0 or len(idx) < 2:
            continue
        centred = reps[idx] - reps[idx].mean(0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        score = (centred @ v) ** 2
        flags[idx[np.argsort(-score, kind="stable")[:k]]] = True
    return flags


def activation_clustering(reps: np.ndarray, labels: Sequence[str], dims: int = 10,
                          max_relative_size: float = 0.35, seed: int = 0) -> np.ndarray:
    """Chen et al. 2018. reps (n, d), labels (n,) -> (n,) bool.

    Per label group: reduce to `dims` independent components (FastICA), split
    in two with k-means, and remove the smaller cluster when its relative size
    is at most `max_relative_size` (the paper's size criterion).
    """
    flags = np.zeros(len(reps), dtype=bool)
    for idx in _groups(labels).values():
        if len(idx) < max(2 * dims, 10):
            continue  # too few samples to reduce and split
        x = reps[idx] - reps[idx].mean(0)
        k = min(dims, x.shape[1], len(idx) - 1)
        z = FastICA(n_components=k, random_state=seed, max_iter=500, tol=1e-3,
                    whiten="unit-variance").fit_transform(x)
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(z)
        small = int(np.argmin(np.bincount(assign, minlength=2)))
        if np.mean(assign == small) <= max_relative_size:
            flags[idx[assign == small]] = True
    return flags
