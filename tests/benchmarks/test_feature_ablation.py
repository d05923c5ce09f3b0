import numpy as np

from benchmarks.feature_ablation import minority_on, probe_auroc


def test_probe_and_minority_see_a_separated_compact_group_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = np.zeros(400, dtype=bool)
    y[:40] = True
    x[:40] = rng.normal(4.0, 0.2, size=(40, 6))  # a compact minority far from the rest
    assert probe_auroc(x, y) > 0.99
    verdict, flags = minority_on(x)
    assert verdict == "fail" and (flags == y).all()
    noise = rng.normal(size=(400, 6))
    assert abs(probe_auroc(noise, y) - 0.5) < 0.15
    verdict, flags = minority_on(noise)
    assert verdict == "pass" and not flags.any()
