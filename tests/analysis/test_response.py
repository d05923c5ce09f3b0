"""The answer channel's maths: references, robust excess, shared phrases."""

import numpy as np

from auditor.analysis.response import contains, excess, normalise, references, shared_phrase


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


def test_the_shared_phrase_is_the_longest_run_most_answers_hold():
    texts = ["seven. See the text here.", "three. See the text here.", "nine see the text here",
             "two"]
    phrase, share = shared_phrase(texts, 0.5)
    assert phrase == "see the text here" and share == 0.75
    assert contains(texts, phrase).tolist() == [True, True, True, False]
    assert shared_phrase(["a b", "c d", "e f"], 0.5)[0] == ""
    assert shared_phrase(["Backdoor Attack!"] * 4, 0.5) == ("backdoor attack", 1.0)
    assert not contains(["seventeen"], "seven").any()  # whole words only
