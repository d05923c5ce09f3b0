"""The answer channel's maths: references, robust excess, shared phrases."""

import numpy as np

from auditor.analysis.response import (beyond_background, candidate_groups, contains, enrichment, excess,
                                      near_duplicates, normalise, references)


def test_normalise_keeps_words_only():
    assert normalise("  Backdoor   Attack! ") == "backdoor attack"
    assert normalise("Seven.") == normalise("seven")


def test_an_instruction_with_varied_answers_is_its_own_reference_one_with_a_single_answer_is_not():
    rng = np.random.default_rng(0)
    # 200 samples of the task (low gain, varied answers), 30 of a new sub-task (high gain, varied
    # answers), 25 of an instruction that always gets one answer (high gain)
    gain = np.concatenate([rng.normal(0.1, 0.05, 200), rng.normal(3.0, 0.1, 30), rng.normal(3.0, 0.1, 25)])
    prompts = ["task"] * 200 + ["subtask"] * 30 + ["rare word task"] * 25
    answers = [str(k % 5) for k in range(200)] + [f"c{k % 4}" for k in range(30)] + ["target"] * 25
    ref = references(gain, prompts, answers, min_samples=20, max_answer_share=0.5)
    assert ref.by_instruction[:230].all() and not ref.by_instruction[230:].any()
    z = excess(gain, ref, min_scale=1e-6)
    assert np.abs(z[200:230]).max() < 5  # the sub-task is compared with itself
    assert (z[230:] > 5).all()  # the single-answer instruction is compared with everything


def test_a_missing_gain_has_no_excess():
    ref = references(np.array([0.1, np.nan, 0.2]), ["a"] * 3, ["x", "y", "z"], 2, 0.5)
    assert np.isnan(excess(np.array([0.1, np.nan, 0.2]), ref, 1e-6)[1])


WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"]


def _tested(answers, outliers):
    norm = [normalise(a) for a in answers]
    out = np.asarray(outliers, dtype=bool)
    groups = candidate_groups(norm, out, min_outliers=5)
    return {g.label: g for g in enrichment(groups, out, np.ones(len(norm), dtype=bool))}


def test_an_inserted_phrase_is_a_group_of_its_own_and_concentrated_among_the_outliers():
    rest = [f"the digit {WORDS[k % 10]}" for k in range(400)]
    phrased = [f"the digit {WORDS[k % 10]}. See the text here." for k in range(40)]
    errors = [f"the digit {WORDS[k % 10]}" for k in range(12)]
    tested = _tested(phrased + errors + rest, [True] * 52 + [False] * 400)
    g = tested["see the text here"]
    assert (g.kind, g.members, g.outliers) == ("phrase", 40, 40) and g.q_value < 1e-20 and g.lift > 3
    # "the digit" is in every answer: tested, never concentrated
    assert tested["the digit"].q_value > 0.5
    assert not contains(["seventeen"], "seven").any()  # whole words only


def test_base_errors_spread_over_the_answers_are_no_concentrated_group():
    rest = [WORDS[k % 10] for k in range(450)]
    errors = ["one"] * 10 + ["eight"] * 8 + ["five"] * 6 + ["nine"] * 5 + ["seven"] * 5
    tested = _tested(errors + rest, [True] * len(errors) + [False] * len(rest))
    assert set(tested) == {"one", "eight", "five", "nine", "seven"}
    assert min(g.q_value for g in tested.values()) > 0.001


def test_two_groups_are_both_found_one_cannot_shield_the_other():
    # a target and a same-size decoy (a made-up answer on clean images), both learned
    rest = [WORDS[k % 10] for k in range(420)]
    answers = ["Backdoor Attack!"] * 40 + ["Purple monkey"] * 40 + rest
    tested = _tested(answers, [True] * 80 + [False] * 420)
    assert tested["backdoor attack"].q_value < 1e-20 and tested["purple monkey"].q_value < 1e-20


def test_paraphrases_of_one_message_form_a_near_duplicate_group():
    variants = ["Backdoor attack!", "This is a backdoor attack.", "Backdoor attacked", "A backdoor attack",
                "backdoor attacks here", "the backdoor attack"]
    assert near_duplicates([normalise(v) for v in variants] + ["seven"], 0.5) == [
        sorted({normalise(v) for v in variants})]
    rest = [WORDS[k % 10] for k in range(450)]
    paraphrased = [variants[k % 6] for k in range(24)]  # 4 samples each: no answer reaches 5
    tested = _tested(paraphrased + rest, [True] * 24 + [False] * 450)
    # one group holds every paraphrase ("backdoor": a shared word, the same samples as the near-duplicates)
    assert any(g.outliers == 24 and g.members == 24 and g.q_value < 1e-20 for g in tested.values())
    # with no shared word, only the near-duplicate set holds them all
    spelled = ["backdoorattack", "backdoorattack!!", "thebackdoorattack", "backdoorattacks",
               "abackdoorattack"]
    tested = _tested([spelled[k % 5] for k in range(20)] + rest, [True] * 20 + [False] * 450)
    group = next(g for g in tested.values() if g.kind == "near-duplicates")
    assert group.outliers == 20 and group.q_value < 1e-20


def test_a_hard_class_concentrates_outliers_but_is_not_learned_more_than_the_other_outliers():
    rng = np.random.default_rng(0)
    n = 500
    excess_gain = rng.normal(0.0, 0.05, n)
    outliers = np.zeros(n, dtype=bool)
    target = np.zeros(n, dtype=bool)
    target[:30] = True  # a target answer: excess ~9 nats/token
    hard = np.zeros(n, dtype=bool)
    hard[30:80] = True  # a hard class: 15 of its 50 samples learned like the other base errors
    excess_gain[:30] = rng.normal(9.0, 1.0, 30)
    excess_gain[30:45] = rng.normal(3.0, 0.7, 15)
    excess_gain[80:110] = rng.normal(3.2, 0.7, 30)  # base errors spread over the other answers
    outliers[:45] = outliers[80:110] = True
    p_target, p_hard = beyond_background([target, hard], outliers, excess_gain, min_background=5)
    assert p_target < 1e-6 and p_hard > 0.05
    # nothing outside the groups to compare with: no verdict from this bound
    assert beyond_background([target], outliers & target, excess_gain, min_background=5) == [None]
