import numpy as np

from auditor.analysis.cluster import cluster_scores, sensitive_score
from auditor.analysis.profile import profile_layers


def test_score_is_the_mean_over_sensitive_layers():
    e = np.array([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    np.testing.assert_allclose(sensitive_score(e, [0, 1]), [1.5, 3.5])


def test_low_mean_cluster_is_flagged():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.9, 0.01, 90), rng.normal(0.3, 0.01, 10)])
    c = cluster_scores(scores)
    assert c.flagged[90:].all() and not c.flagged[:90].any()
    assert scores[c.flagged].max() < c.threshold < scores[~c.flagged].min()


def test_profile_marks_only_the_bimodal_layer_sensitive():
    rng = np.random.default_rng(0)
    n = 200
    unimodal = rng.normal(0.8, 0.05, n)
    bimodal = np.where(np.arange(n) < 20, rng.normal(0.2, 0.02, n), rng.normal(0.8, 0.02, n))
    profiles = profile_layers(np.stack([unimodal, bimodal], axis=1), tau=2.0)
    assert [p.sensitive for p in profiles] == [False, True]
    assert profiles[1].bsi > 10
