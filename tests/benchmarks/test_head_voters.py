import numpy as np

from benchmarks.head_voters import head_features, jaccard, voters


def test_head_features_uniform_is_high_entropy_low_peak_and_one_token_the_reverse():
    rows = np.full((2, 3, 8), 0.05)  # (L, H, T): 40% of each head's mass on 8 image tokens, uniform
    rows[1, 2] = [0.6, 0, 0, 0, 0, 0, 0, 0]  # one head collapsed onto one token
    entropy, peak = head_features(rows)
    assert entropy.shape == peak.shape == (2, 3)
    assert np.isclose(entropy[0, 0], 1.0) and np.isclose(peak[0, 0], 1 / 8)
    assert entropy[1, 2] < 1e-6 and np.isclose(peak[1, 2], 1.0)


def test_voters_flag_a_collapsed_minority_and_ignore_noise():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros(n, dtype=bool)
    y[:40] = True
    prompts = rng.choice(["a", "b"], size=n)
    collapsed = rng.normal(0.2, 0.02, n)
    collapsed[y] = rng.normal(0.8, 0.02, 40)  # 10% of the samples put a head's peak on one token
    found = voters({"noise": rng.normal(size=n), "head": collapsed}, prompts)
    assert found[0][1] == "head" and (found[0][2] == y).all()
    assert found[0][0] > 5 and all(b < found[0][0] for b, name, _ in found if name == "noise")
    assert jaccard(found[0][2], y) == 1.0 and jaccard(y, ~y) == 0.0
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 0.0


def test_study_finds_a_head_that_collapses_on_a_tenth_of_the_samples(tmp_path):
    from benchmarks.head_voters import study

    rng = np.random.default_rng(3)
    n, layers, heads = 300, 3, 4
    poisoned = np.zeros(n, dtype=bool)
    poisoned[:30] = True
    peak = rng.uniform(0.05, 0.15, size=(n, layers, heads))
    peak[poisoned, 1, 2] = rng.uniform(0.85, 0.95, 30)  # one head puts its attention on the trigger
    entropy = 1.0 - peak
    np.savez(tmp_path / "cell.npz", entropy=entropy, peak=peak, poisoned=poisoned,
             prompts=rng.choice(["q1", "q2"], size=n))
    r = study(tmp_path / "cell.npz")
    assert r["best_auroc"] == 1.0
    assert r["top"][0][0] in ("peak 1.2", "-entropy 1.2") and r["top"][0][3] == 1.0
    assert r["minority"]["peak"][0] == "fail" and r["minority"]["peak"][1] == 1.0
    assert r["minority"]["either"][0] == "fail"
