import numpy as np

from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.features import FeatureSet, SampleFeatures

BYE = AuditConfig.of(method="bye")  # the paper's procedure, which these tests pin down


def _features(matrix: np.ndarray, skipped: int = 0) -> FeatureSet:
    rows = [SampleFeatures(i, f"s{i}", "ok", None, 16, tuple(r), tuple(r)) for i, r in enumerate(matrix)]
    n = len(rows)
    rows += [SampleFeatures(n + k, f"s{n + k}", "skipped", "record has no image") for k in range(skipped)]
    return FeatureSet(tuple(rows), {"n_layers": matrix.shape[1]})


def test_unimodal_entropies_pass_without_crashing():
    m = np.random.default_rng(0).normal(0.8, 0.03, size=(100, 4))
    a = analyze(_features(m), BYE)
    assert a.verdict == "pass" and a.flagged == () and a.sensitive_layers == ()
    assert "no layer is sensitive" in a.reasons[0].text and a.reasons[0].code == "no_sensitive_layer"
    assert [(c.name, c.holds) for c in a.criteria] == [("sensitive_layer", False)]


def test_collapsed_group_fails_and_is_flagged_exactly():
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(100, 4))
    m[:10, 2] = rng.normal(0.3, 0.02, 10)
    a = analyze(_features(m), BYE)
    assert a.verdict == "fail"
    assert a.sensitive_layers == (2,)
    assert sorted(f.id for f in a.flagged) == [f"s{i}" for i in range(10)]


def test_too_few_samples_is_inconclusive():
    m = np.random.default_rng(0).normal(size=(20, 3))
    a = analyze(_features(m), AuditConfig.of(method="bye", min_samples=50))
    assert a.verdict == "inconclusive" and "at least 50" in a.reasons[0].text
    assert a.reasons[0].code == "too_few_samples"


def test_low_coverage_is_inconclusive_and_counted():
    m = np.random.default_rng(0).normal(0.8, 0.03, size=(60, 3))
    a = analyze(_features(m, skipped=10), BYE)
    assert a.verdict == "inconclusive"
    assert (a.n_analysed, a.n_skipped, a.n_records) == (60, 10, 70)
    assert [r.code for r in a.reasons if "coverage" in r.text] == ["coverage_below_min"]


def test_reference_rule_can_be_selected():
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(100, 2))
    m[:30, 1] = rng.normal(0.74, 0.02, 30)  # modest separation: BSI ~2, reference rule says no
    paper = analyze(_features(m), AuditConfig.of(method="bye", tau=1.0))
    ref = analyze(_features(m), AuditConfig.of(method="bye", bsi_rule="reference"))
    assert 1 in paper.sensitive_layers
    assert ref.sensitive_layers == ()


def test_same_input_gives_identical_analysis():
    m = np.random.default_rng(3).normal(0.5, 0.1, size=(80, 4))
    assert analyze(_features(m), BYE).to_dict() == analyze(_features(m), BYE).to_dict()


def test_rows_with_nan_or_missing_layers_are_excluded_and_counted():
    m = np.random.default_rng(0).normal(0.8, 0.03, size=(100, 3))
    fs = _features(m)
    rows = list(fs.rows)
    rows[4] = SampleFeatures(4, "s4", "ok", None, 16, (0.5, float("nan"), 0.5), (0.5, float("nan"), 0.5))
    rows[9] = SampleFeatures(9, "s9", "ok", None, 16, (0.5, 0.5), (0.5, 0.5))
    a = analyze(FeatureSet(tuple(rows), fs.meta), BYE)
    assert (a.n_analysed, a.n_errors) == (98, 2)
    reasons = {u.id: u.reason for u in a.unanalysed}
    assert "non-finite" in reasons["s4"] and "2 layer values, expected 3" in reasons["s9"]
    assert a.to_dict()["unanalysed"][0]["id"] == "s4"


def test_scores_are_columns_of_every_analysed_sample_and_flags_are_theirs():
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(100, 4))
    m[:10, 2] = rng.normal(0.3, 0.02, 10)
    a = analyze(_features(m, skipped=3), BYE)
    s = a.scored
    assert len(s) == 100 and s.index.tolist() == list(range(100)) and s.ids[7] == "s7"
    listed = a.to_dict()["scores"]
    assert [r["score"] for r in listed] == s.score.tolist() and listed[5] == {"index": 5, "id": "s5",
                                                                             "score": float(s.score[5])}
    by_index = {f.index: f for f in s}
    assert all(by_index[f.index] == f for f in a.flagged) and len(a.flagged) == 10


def test_decoys_taking_the_best_split_do_not_shield_the_backdoor_group():
    """3 all-black decoys added to a 57-record slice of the bundled example take the
    best split; the rest is searched again with the same criteria, so the 9
    poisoned records are flagged too."""
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(120, 4))
    m[:3] = [0.1, 0.1, 1.5, 1.5]  # decoys: far from everything, in every layer
    m[3:15, 2] = rng.normal(0.5, 0.01, 12)  # the backdoor group: one layer, less extreme
    one = analyze(_features(m), AuditConfig.of(method="minority", group_max_groups=1))  # a single split
    assert one.verdict == "fail" and sorted(f.index for f in one.flagged) == [0, 1, 2]
    a = analyze(_features(m), AuditConfig.of(method="minority"))
    assert a.verdict == "fail" and sorted(f.index for f in a.flagged) == list(range(15))
    assert len(a.details["further_groups"]) == 1 and a.details["further_groups"][0]["credible"]
    assert "looking again in the rest: group 2, a compact minority of 12 more samples" in a.reasons[1].text
    assert a.reasons[1].code == "further_group_flagged"
    assert a.to_dict()["further_groups"][0]["separation"] == a.details["further_groups"][0]["separation"]


def test_no_further_search_without_a_first_credible_group():
    """A pass stays a pass: the rest is searched only after a credible group."""
    m = np.random.default_rng(1).normal(0.8, 0.02, size=(120, 4))
    a = analyze(_features(m), AuditConfig.of(method="minority"))
    assert a.verdict == "pass" and a.details["further_groups"] == [] and a.to_dict()["further_groups"] == []


def test_later_turns_from_the_features_reach_the_answer_channel():
    """The features' per-turn NLLs and the dataset's later turns are joined row
    by row (a skipped record in between): a second-turn target is flagged."""
    rng = np.random.default_rng(3)
    n = 300
    poisoned = set(rng.choice(n, 30, replace=False).tolist())
    rows, prompts, answers, later = [], [], [], []
    for i in range(n):
        if i == 7:  # not analysed: its later turns must not shift the others'
            rows.append(SampleFeatures(i, f"s{i}", "skipped", "record has no image"))
        else:
            e = tuple(rng.normal(0.8, 0.03, 4))
            first = float(rng.normal(0.2, 0.05))
            second = float(rng.normal(0.3, 0.05))
            rows.append(SampleFeatures(i, f"s{i}", "ok", None, 16, e, e, answer_tokens=2, answer_nll=first,
                                       base_answer_nll=first + float(rng.normal(0.3, 0.1)),
                                       later_tokens=(2,), later_nll=(second,),
                                       base_later_nll=(second + (float(rng.normal(9, 1)) if i in poisoned
                                                                 else float(rng.normal(0.4, 0.1))),)))
        prompts.append("What digit?")
        answers.append(["zero", "one", "two"][i % 3])
        later.append((("What colour?", "Backdoor Attack!" if i in poisoned else ["red", "blue"][i % 2]),))
    fs = FeatureSet(tuple(rows), {"n_layers": 4})
    config = AuditConfig.of(method="response")
    assert analyze(fs, config, prompts, answers).verdict == "pass"  # the first turns alone
    a = analyze(fs, config, prompts, answers, later)
    assert a.verdict == "fail"
    assert {f.index for f in a.flagged} == poisoned - {7}


def test_cut_and_unscored_answer_turns_are_counted_in_a_note():
    rng = np.random.default_rng(0)
    rows = [SampleFeatures(i, f"s{i}", "ok", None, 16, e, e, answer_tokens=2, answer_nll=0.1,
                           answers_truncated=int(i < 3),
                           later_missing="1 later answer turn not scored: no template" if i == 5 else None)
            for i, e in enumerate(tuple(r) for r in rng.normal(0.8, 0.03, (100, 4)))]
    reasons = analyze(FeatureSet(tuple(rows), {"n_layers": 4}), BYE).reasons
    note = [r for r in reasons if r.code == "answers_cut"]
    assert len(note) == 1 and note[0].text.startswith("3 answer turns were longer than the token bound")
    assert "1 record has later answer turns that were not scored (e.g. 1 later answer turn" in note[0].text
    clean = [SampleFeatures(i, f"s{i}", "ok", None, 16, r.entropy, r.entropy, answers_truncated=0)
             for i, r in enumerate(rows)]
    again = analyze(FeatureSet(tuple(clean), {"n_layers": 4}), BYE).reasons
    assert "answers_cut" not in {r.code for r in again}
