"""The baseline detectors find what they are built to find, and only that."""

import numpy as np

from benchmarks.baselines import activation_clustering, random_drop, spectral_signatures


def _reps(n=200, d=16, poisoned=20, shift=6.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    bad = np.zeros(n, dtype=bool)
    bad[rng.choice(n, poisoned, replace=False)] = True
    x[bad, 0] += shift  # the poisoned share moves along one direction
    return x, bad


def test_random_drop_flags_the_asked_share_and_follows_the_seed():
    a, b, c = random_drop(500, 0.2, seed=1), random_drop(500, 0.2, seed=1), random_drop(500, 0.2, seed=2)
    assert a.sum() == 100
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_spectral_signatures_removes_the_shifted_share_within_its_label_group():
    x, bad = _reps()
    labels = ["seven"] * len(x)
    flags = spectral_signatures(x, labels, epsilon=0.1)
    assert flags.sum() == 30  # 1.5 * epsilon of the group
    assert bad[flags].sum() == 20  # every poisoned sample is among the removed


def test_spectral_signatures_works_per_group():
    x, bad = _reps()
    labels = np.where(np.arange(len(x)) % 2 == 0, "a", "b")
    flags = spectral_signatures(x, labels, epsilon=0.1)
    assert flags[labels == "a"].sum() == 15 and flags[labels == "b"].sum() == 15


def test_activation_clustering_flags_a_separated_minority_and_leaves_a_unimodal_group():
    x, bad = _reps(shift=12.0)
    flags = activation_clustering(x, ["seven"] * len(x), seed=0)
    assert np.array_equal(flags, bad)
    clean = np.random.default_rng(3).normal(size=(200, 16))
    # a unimodal group splits into two halves, neither small enough to flag
    assert activation_clustering(clean, ["seven"] * 200, seed=0).sum() == 0
