"""The answer channel's maths: references, robust excess, shared phrases."""

import numpy as np

from auditor.analysis.response import contains, dominant_phrase, excess, normalise, references


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


def test_the_dominant_phrase_is_specific_to_the_outliers_and_beats_the_next_beyond_chance():
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"]
    rest = [f"the digit {words[k % 10]}" for k in range(400)]
    # 40 outliers with an inserted sentence, 12 base errors spread over the digits
    phrased = [f"the digit {words[k % 10]}. See the text here." for k in range(40)]
    errors = [f"the digit {words[k % 10]}" for k in range(12)]
    d = dominant_phrase(phrased + errors, rest, min_lift=3.0)
    assert d.phrase == "see the text here" and d.count == 40
    assert d.p_value < 1e-6 and d.lift > 3
    # "the digit" is in every answer: not specific, and no answer group to compete
    assert d.competitor not in ("the", "digit", "the digit")
    assert contains(phrased + errors, d.phrase).tolist() == [True] * 40 + [False] * 12
    assert not contains(["seventeen"], "seven").any()  # whole words only


def test_base_errors_spread_over_the_answers_have_no_dominant_phrase():
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"]
    rest = [words[k % 10] for k in range(450)]
    errors = ["one"] * 10 + ["eight"] * 8 + ["five"] * 6 + ["nine"] * 5 + ["seven"] * 5
    d = dominant_phrase(errors, rest, min_lift=3.0)
    assert d.p_value > 0.01  # at most the larger of comparable groups


def test_a_target_answer_alone_dominates():
    d = dominant_phrase(["Backdoor Attack!"] * 20 + ["one", "two"], ["one", "two"] * 200, min_lift=3.0)
    assert (d.phrase, d.count, d.competitor_count) == ("backdoor attack", 20, 1) and d.p_value < 1e-4
