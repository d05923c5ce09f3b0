import numpy as np
import pytest

from auditor.analysis.mixture import Mixture1D, bsi, fit_mixture, reference_separated


def test_bsi_on_paper_numbers():
    mix = Mixture1D(means=(1.0, 4.0), variances=(0.5, 0.5), weights=(0.5, 0.5), converged=True)
    assert bsi(mix) == pytest.approx(3.0)


def test_reference_rule_is_stricter_than_bsi():
    # |mu1 - mu2| = 3, s1 = s2 = 1: BSI = 3 / sqrt(2) = 2.12 >= 2, but 3 < 2 (1 + 1) = 4
    mix = Mixture1D(means=(0.0, 3.0), variances=(1.0, 1.0), weights=(0.5, 0.5), converged=True)
    assert bsi(mix) >= 2.0
    assert not reference_separated(mix)
    wide = Mixture1D(means=(0.0, 5.0), variances=(1.0, 1.0), weights=(0.5, 0.5), converged=True)
    assert reference_separated(wide)


def test_fit_recovers_known_components_sorted_by_mean():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5.0, 0.1, 300), rng.normal(1.0, 0.1, 100)])
    mix, assign = fit_mixture(x)
    assert mix.means[0] == pytest.approx(1.0, abs=0.05)
    assert mix.means[1] == pytest.approx(5.0, abs=0.05)
    assert mix.weights[0] == pytest.approx(0.25, abs=0.01)
    assert (assign[300:] == 0).all() and (assign[:300] == 1).all()


def test_fit_is_deterministic():
    x = np.random.default_rng(1).normal(size=200)
    assert fit_mixture(x, seed=0)[0] == fit_mixture(x, seed=0)[0]
