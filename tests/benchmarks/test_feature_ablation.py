import numpy as np

from benchmarks.feature_ablation import answer_separability, minority_on, probe, skewed_tail, within_groups


def test_probe_and_minority_see_a_separated_compact_group_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = np.zeros(400, dtype=bool)
    y[:40] = True
    x[:40] = rng.normal(4.0, 0.2, size=(40, 6))  # a compact minority far from the rest
    auroc, f1 = probe(x, y)
    assert auroc > 0.99 and f1 > 0.99
    verdict, flags = minority_on(x)
    assert verdict == "fail" and (flags == y).all()
    noise = rng.normal(size=(400, 6))
    auroc, f1 = probe(noise, y)
    assert abs(auroc - 0.5) < 0.15 and f1 < 0.5  # chance: about 2 x 0.1 / (1 + 0.1) at best
    verdict, flags = minority_on(noise)
    assert verdict == "pass" and not flags.any()


def test_within_groups_removes_each_groups_offset():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.array(["a", "b"]), 200)
    x = rng.normal(size=(400, 3))
    x[groups == "b"] += 10.0  # the instruction shifts every feature
    z = within_groups(x, groups)
    for g in ("a", "b"):
        assert np.allclose(np.median(z[groups == g], axis=0), 0.0, atol=1e-9)
    assert abs(z[groups == "b"].mean() - z[groups == "a"].mean()) < 0.3


def test_skewed_tail_finds_a_planted_tail_group_and_answer_separability_ranks_it():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 8))
    y = np.zeros(500, dtype=bool)
    y[:50] = True
    x[:50, 3] += 6.0  # a 10% group off along one direction
    tail = skewed_tail(x)
    assert (tail == y).mean() > 0.97
    answers = np.where(y, "target", rng.choice(["p", "q", "r"], size=500))
    sep = answer_separability(x, answers)
    assert sep["target"] > 0.99
    assert all(abs(sep[a] - 0.5) < 0.15 for a in ("p", "q", "r"))
