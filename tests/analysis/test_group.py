import numpy as np
import pytest

from auditor.analysis.group import (fit_group, instruction_match, layer_contrast, null_separations,
                                    robust_standardise)
from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.features import FeatureSet, SampleFeatures

MINORITY = AuditConfig.of(method="minority")


def _features(x: np.ndarray) -> FeatureSet:
    rows = tuple(SampleFeatures(i, f"s{i}", "ok", None, 16, tuple(v), tuple(v)) for i, v in enumerate(x))
    return FeatureSet(rows, {"n_layers": x.shape[1]})


def _clean(n=1000, d=8, seed=0):
    """Correlated, skewed per-layer entropies in (0, 1): no group in them."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 2))
    mix = rng.normal(size=(2, d))
    x = 0.6 + 0.08 * (latent @ mix) / np.sqrt(2) + 0.03 * rng.gamma(2.0, 1.0, (n, d))
    return np.clip(x, 0.01, 0.99)


def _with_dispersed_group(x, frac=0.1, layers=(4, 5, 6), seed=1):
    """A tight group at near-uniform entropy in some layers (what the bundled example shows)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    idx = rng.choice(len(x), int(frac * len(x)), replace=False)
    for layer in layers:
        x[idx, layer] = rng.normal(0.95, 0.01, len(idx))
    truth = np.zeros(len(x), bool)
    truth[idx] = True
    return x, truth


def test_robust_standardise_ignores_a_minority_of_outliers():
    x = np.r_[np.random.default_rng(0).normal(5, 2, (900, 3)), np.full((100, 3), 100.0)]
    z = robust_standardise(x)
    assert z.shape == x.shape
    assert np.allclose(np.median(z[:900], axis=0), 0, atol=0.2)
    assert np.allclose(np.median(np.abs(z[:900]), axis=0) * 1.4826, 1, atol=0.2)
    assert np.all(robust_standardise(np.ones((5, 2))) == 0)


def test_noise_splits_far_below_the_separation_a_group_gives():
    null = null_separations(1000, 8, seed=0)
    assert len(null) == 5 and max(null) < 2.0
    x, truth = _with_dispersed_group(_clean())
    fit = fit_group(robust_standardise(x))
    assert fit.separation > 2 * max(null)
    assert (fit.clustering.flagged == truth).mean() > 0.99
    assert fit.weight == pytest.approx(0.1, abs=0.02) and fit.spread_ratio < 1


def test_layer_contrast_names_the_layers_and_their_direction():
    x, truth = _with_dispersed_group(_clean())
    contrast = layer_contrast(x, truth, np.ones(x.shape[1]) / np.sqrt(x.shape[1]))
    big = {c.layer for c in contrast if abs(c.effect) > 2}
    assert big == {4, 5, 6} and all(contrast[k].effect > 0 for k in big)


@pytest.mark.parametrize("seed", range(3))
def test_clean_profiles_pass(seed):
    a = analyze(_features(_clean(seed=seed)), MINORITY)
    assert a.verdict == "pass" and a.flagged == ()
    assert a.details["group"] is not None and not a.details["group"]["credible"]
    assert "no credible backdoor group" in a.reasons[0].text
    assert a.reasons[0].code in ("no_separated_group", "group_not_minority")
    assert not all(c.holds for c in a.criteria)


def test_a_dispersed_group_fails_the_audit_where_bye_misses_it():
    x, truth = _with_dispersed_group(_clean())
    a = analyze(_features(x), MINORITY)
    assert a.verdict == "fail"
    flagged = {f.index for f in a.flagged}
    assert flagged == set(np.flatnonzero(truth))
    assert set(a.evidence_layers) == {4, 5, 6}
    assert "higher entropy" in a.reasons[0].text and a.reasons[0].code == "group_flagged"
    assert all(c.holds for c in a.criteria) and "more dispersed (higher entropy)" in a.evidence_text
    bye = analyze(_features(x), AuditConfig.of(method="bye"))
    bye_flagged = {f.index for f in bye.flagged}
    assert len(bye_flagged & flagged) < 0.5 * len(flagged)  # BYE flags the low side: not the group


def test_a_large_separated_mode_is_not_a_backdoor_group():
    """Two equal modes (e.g. two prompt templates) separate well, but neither is a minority."""
    x = _clean()
    x[: len(x) // 2, 2] += 0.3
    a = analyze(_features(x), MINORITY)
    assert a.verdict == "pass" and "minority" in a.reasons[0].text
    assert not {c.name: c for c in a.criteria}["minority"].holds


def test_a_scattered_minority_is_not_compact():
    rng = np.random.default_rng(0)
    x = _clean()
    idx = rng.choice(len(x), 100, replace=False)
    x[idx] += rng.normal(0, 0.3, (100, x.shape[1]))  # broad outliers, no common response
    a = analyze(_features(x), MINORITY)
    assert a.verdict == "pass", a.reasons


def test_minority_analysis_is_deterministic():
    x, _ = _with_dispersed_group(_clean())
    assert analyze(_features(x), MINORITY).to_dict() == analyze(_features(x), MINORITY).to_dict()


def test_a_separated_but_broad_minority_is_inconclusive_not_pass():
    """Strong separation of a minority that is not more compact than the rest is
    ambiguous evidence: nothing is flagged, but the audit does not pass."""
    rng = np.random.default_rng(0)
    x = _clean()
    idx = rng.choice(len(x), 100, replace=False)
    x[idx, 5] = rng.normal(0.2, 0.12, 100)  # far from the rest in one layer, broadly spread
    a = analyze(_features(x), MINORITY)
    g = a.details["group"]
    assert g["separation"] >= g["required_separation"] and g["weight"] <= 0.35 and g["spread_ratio"] > 1.0, g
    assert a.verdict == "inconclusive" and a.flagged == () and a.reasons[0].text.startswith("ambiguous")
    assert a.reasons[0].code == "group_not_compact"
    assert [c.name for c in a.criteria if not c.holds] == ["compact"]


def test_instruction_match_measures_how_far_the_instructions_explain_a_group():
    prompts = ["What shape?"] * 100 + ["Which shape?"] * 60 + ["What colour?"] * 240 + [f"q{i}"
                                                                                        for i in range(100)]
    whole = [p for p in prompts if "shape" in p]  # every sample of two instructions
    m = instruction_match(whole, prompts, min_class=10)
    assert m.jaccard == 1.0 and m.texts == ("What shape?", "Which shape?")
    m = instruction_match(whole[:150] + ["What colour?"] * 10, prompts, min_class=10)
    assert m.jaccard == pytest.approx(150 / 170) and m.texts == ("What shape?", "Which shape?")
    spread = prompts[::10]  # one in ten of every instruction: a trigger pays no attention to the prompt
    assert instruction_match(spread, prompts, min_class=10).jaccard == 0.0
    # one text per sample explains nothing: each is trivially all in or all out
    assert instruction_match(prompts[400:450], prompts, min_class=10) == instruction_match([], prompts, 10)
    assert instruction_match(prompts[400:450], prompts, min_class=10).jaccard == 0.0


def _prompts_for(truth: np.ndarray, inside: bool) -> list[str]:
    """Three instructions; with `inside` the group is exactly the samples of one."""
    rng = np.random.default_rng(5)
    other = rng.choice(["Describe the image.", "Write a caption."], len(truth)).tolist()
    if inside:
        return ["What is the shape?" if t else o for t, o in zip(truth, other)]
    return rng.choice(["What is the shape?", "Describe the image.", "Write a caption."], len(truth)).tolist()


def test_a_group_that_is_one_instruction_passes_with_the_instruction_named():
    x, truth = _with_dispersed_group(_clean())
    a = analyze(_features(x), MINORITY, _prompts_for(truth, inside=True))
    assert a.verdict == "pass" and a.flagged == () and not a.details["group"]["credible"]
    assert "'What is the shape?'" in a.reasons[0].text and "the prompt, not the image" in a.reasons[0].text
    assert a.reasons[0].code == "group_is_instruction"
    assert a.to_dict()["group"]["instruction"] == {"jaccard": 1.0, "texts": ["What is the shape?"]}


def test_the_same_group_across_instructions_still_fails():
    x, truth = _with_dispersed_group(_clean())
    a = analyze(_features(x), MINORITY, _prompts_for(truth, inside=False))
    assert a.verdict == "fail" and {f.index for f in a.flagged} == set(np.flatnonzero(truth))
    assert a.details["group"]["instruction"]["jaccard"] < 0.2
    assert analyze(_features(x),
                   MINORITY).details["group"]["instruction"] is None  # no prompts given: no check


def test_each_evidence_layer_is_described_by_the_sign_of_its_own_effect():
    """A layer's direction comes from its own d: one word from the mean d over the layers
    would call layer 3 (d = -1.80) 'more dispersed' beside layers 4-7 at d > 0."""
    from auditor.analysis.group import LayerContrast
    from auditor.detectors.base import direction_text

    contrast = [LayerContrast(k, 0.0, 0.0, d, 0.0) for k, d in enumerate([0.1, 0.2, 0.3, -1.8, 1.1, 1.2, 1.3,
                                                                          0.9])]
    assert direction_text(contrast, [3, 4, 5, 6, 7]) == (
        "more collapsed (lower entropy) than the rest in layer 3; "
        "more dispersed (higher entropy) than the rest in layers 4, 5, 6, 7")
    assert direction_text(contrast, [3]) == "more collapsed (lower entropy) than the rest in layer 3"
    assert direction_text(contrast, []) == "no different from the rest in any layer"
