"""The response and combined methods on synthetic channels: a learned target
answer fails, a content class passes with its name, and without a base the
answer channel has no evidence and a content-like attention group is inconclusive."""

import numpy as np
import pytest

from auditor.detectors import CombinedDetector, Context, ResponseDetector, decide

N = 500


def _world(poison: bool, seed: int = 0, colour_group: bool = False):
    """(x (N, 6) entropies, context, truth): digits answers over 3 phrasings, the
    base already knows the task (small gains); with `poison`, 50 samples answer
    "Backdoor Attack!", which the base finds implausible; with `colour_group`,
    the samples answered "blue" stand apart in attention (content)."""
    rng = np.random.default_rng(seed)
    answers = [["zero", "one", "two", "blue", "four"][rng.integers(5)] for _ in range(N)]
    prompts = [["What digit?", "Which digit is it?", "Name the digit."][rng.integers(3)] for _ in range(N)]
    nll = rng.normal(0.2, 0.05, N)
    base = nll + rng.normal(0.3, 0.1, N)
    x = rng.normal(size=(N, 6))
    truth = np.zeros(N, dtype=bool)
    if poison:
        truth[rng.choice(N, 50, replace=False)] = True
        for k in np.flatnonzero(truth):
            answers[k] = "Backdoor Attack!"
        base[truth] = rng.normal(9.0, 1.0, truth.sum())
    if colour_group:
        blue = np.array([a == "blue" for a in answers])
        x[blue] = rng.normal(size=(blue.sum(), 6)) * 0.3 + 4.0
    ctx = Context(prompts, 0, 50_000, 50, (), answers=answers, answer_nll=nll, base_nll=base)
    return x, ctx, truth


def test_a_learned_target_answer_is_flagged_exactly():
    x, ctx, truth = _world(poison=True)
    d = ResponseDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail"
    assert (d.flagged_ == truth).all()
    assert d.reasons_[0].code == "answer_flagged" and "backdoor attack" in d.reasons_[0].text
    assert (d.scores_[truth].max() < d.scores_[~truth].min())  # lower is more suspicious


def test_clean_answers_pass():
    x, ctx, _ = _world(poison=False)
    d = ResponseDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "pass" and not d.flagged_.any()
    assert d.reasons_[0].code == "no_learned_answer"


def test_without_a_base_the_answer_channel_has_no_evidence():
    x, ctx, _ = _world(poison=True)
    no_base = Context(ctx.prompts, 0, 50_000, 50, (), answers=ctx.answers, answer_nll=ctx.answer_nll,
                      base_nll=np.full(N, np.nan))
    d = ResponseDetector().fit(x, no_base)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "pass"
    assert d.reasons_[0].code == "no_base_pass"


def test_a_content_class_in_attention_passes_and_is_named():
    x, ctx, _ = _world(poison=False, colour_group=True)
    d = CombinedDetector().fit(x, ctx)
    assert d.details_["channels"]["attention"]["credible"]  # the attention channel alone would fail
    assert decide(d.criteria_, bool(d.flagged_.any())) == "pass" and not d.flagged_.any()
    assert d.reasons_[0].code == "group_is_content" and "“blue”" in d.reasons_[0].text


def test_a_content_like_group_without_a_base_is_inconclusive():
    x, ctx, _ = _world(poison=False, colour_group=True)
    no_base = Context(ctx.prompts, 0, 50_000, 50, (), answers=ctx.answers, answer_nll=ctx.answer_nll,
                      base_nll=None)
    d = CombinedDetector().fit(x, no_base)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "inconclusive"
    assert d.reasons_[0].code == "group_may_be_content"


@pytest.mark.parametrize("colour_group", [False, True])
def test_combined_fails_on_a_learned_target_and_names_the_channel(colour_group):
    x, ctx, truth = _world(poison=True, colour_group=colour_group)
    d = CombinedDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail"
    assert (d.flagged_ == truth).all()
    assert d.channel_flags_["answers"][truth].all() and not d.channel_flags_["attention"].any()
