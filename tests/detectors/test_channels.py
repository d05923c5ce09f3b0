"""The response and combined methods on synthetic channels: a learned target
answer fails, a content class passes with its name, and without a base the
answer channel has no evidence and a content-like attention group is inconclusive."""

import numpy as np
import pytest

from auditor.detectors import CombinedDetector, Context, ResponseDetector, decide

N = 500


def _plant_target(answers: list, base: np.ndarray, rng) -> np.ndarray:
    """50 of the answers made "Backdoor Attack!", which the base finds
    implausible (in place); the poisoned rows (N,) bool."""
    truth = np.zeros(len(answers), dtype=bool)
    truth[rng.choice(len(answers), 50, replace=False)] = True
    for k in np.flatnonzero(truth):
        answers[k] = "Backdoor Attack!"
    base[truth] = rng.normal(9.0, 1.0, truth.sum())
    return truth


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
    truth = _plant_target(answers, base, rng) if poison else np.zeros(N, dtype=bool)
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


def test_the_outputs_say_which_channel_flagged_what(tmp_path):
    """analysis.json, summary.json, SARIF and the report of a combined audit
    name the answer channel for a learned target, with each sample's NLL and gain."""
    import json

    from PIL import Image

    from auditor.config import AuditConfig
    from auditor.data import read_dataset
    from auditor.features import FeatureSet, SampleFeatures
    from auditor.gate import gate, parse_fail_on
    from auditor.report.html import render_html
    from auditor.report.sarif import sarif_dict
    from auditor.report.summary import summary_dict
    from auditor.verdict import analyze

    x, ctx, truth = _world(poison=True, seed=1)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "i.png")
    recs = [{"id": f"r{i:04d}", "image": "i.png", "conversations": [
        {"from": "human", "value": f"<image>\n{ctx.prompts[i]}"}, {"from": "gpt", "value": ctx.answers[i]}]}
        for i in range(N)]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    ds = read_dataset(tmp_path / "d.json")
    rows = tuple(SampleFeatures(i, s.id, "ok", None, 16, tuple(x[i]), tuple(x[i]), answer_tokens=2,
                                answer_nll=float(ctx.answer_nll[i]),
                                answer_first_nll=float(ctx.answer_nll[i]),
                                base_answer_nll=float(ctx.base_nll[i]), base_first_nll=float(ctx.base_nll[i]))
                 for i, s in enumerate(ds.samples))
    features = FeatureSet(rows, {"n_layers": 6})
    from auditor.fileio import json_bytes

    for method in ("response", "combined"):  # every method's record renders as analysis.json does
        other = analyze(features, AuditConfig.of(method=method), [s.prompt for s in ds.samples],
                        [s.answer for s in ds.samples])
        assert json.loads(json_bytes(other.to_dict()))["method"] == method
    a = analyze(features, AuditConfig.of(method="combined"), [s.prompt for s in ds.samples],
                [s.answer for s in ds.samples])
    assert a.verdict == "fail" and {f.index for f in a.flagged} == set(np.flatnonzero(truth).tolist())
    assert {tuple(d["channels"]) for d in a.to_dict()["flagged_by"]} == {("answers",)}
    g = gate(a.verdict, len(a.flagged), a.n_analysed, parse_fail_on("verdict"))
    summary = summary_dict(a, features.provenance, {}, g, "0" * 16, "2026-01-01T00:00:00Z")
    assert all(f["channels"] == ["answers"] for f in summary["flagged"])
    result = sarif_dict(a, ds, int(g.exit_code))["runs"][0]["results"][0]
    assert result["ruleId"] == "BYE004" and "by the answers channel" in result["message"]["text"]
    html = render_html(a, features.meta, ds, features=features).decode()
    assert "<th>channel</th>" in html and "answer NLL (gain)" in html
    assert "attention (minority)" in html and "Flagged by both channels: 0." in html
    worst = min(a.flagged, key=lambda f: (f.score, f.index)).index
    assert f"{ctx.base_nll[worst] - ctx.answer_nll[worst]:+.3f}" in html


# Attacks on the verdict rule by someone who knows it (each passed before the group tests).

def _answers_world(n: int, seed: int, groups: dict[str, int], clean_outliers: dict[str, int]):
    """(x, context, truth): n digit answers whose gains are small, `groups`
    (answer -> count) of implausible answers the fine-tune learned (gain ~9
    nats/token), and `clean_outliers` (answer -> count): clean samples the base
    got wrong and the fine-tune learned (gain ~3), as a clean fine-tune has."""
    rng = np.random.default_rng(seed)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    answers = [words[k % 10] for k in range(n)]
    prompts = [["What digit?", "Which digit is it?", "Name the digit."][rng.integers(3)] for _ in range(n)]
    nll = rng.normal(0.2, 0.05, n)
    base = nll + rng.normal(0.05, 0.05, n)
    truth = np.zeros(n, dtype=bool)
    k = 0
    for answer, count in groups.items():
        for _ in range(count):
            answers[k], base[k], truth[k] = answer, nll[k] + rng.normal(9.0, 1.0), True
            k += 1
    for answer, count in clean_outliers.items():
        for _ in range(count):
            answers[k], base[k] = answer, nll[k] + rng.normal(3.0, 0.5)
            k += 1
    ctx = Context(prompts, 0, 50_000, 50, (), answers=answers, answer_nll=nll, base_nll=base)
    return rng.normal(size=(n, 6)), ctx, truth


def test_a_low_poison_rate_beside_clean_outliers_of_one_answer_is_flagged():
    """13 poisoned (4.3%) beside 4 clean outliers answering "eight": the target's group
    is tested as a group, not against the runner-up answer (p 0.025 there)."""
    x, ctx, truth = _answers_world(300, 0, {"Backdoor Attack!": 13}, {"eight": 4})
    d = CombinedDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail" and (d.flagged_ == truth).all()


def test_decoys_cannot_shield_a_target_both_groups_are_flagged():
    """40 poisoned and 40 clean samples with one made-up answer split the outliers 40/40
    (p 0.55 between them): each group is tested on its own and both are flagged."""
    x, ctx, truth = _answers_world(500, 1, {"Backdoor Attack!": 40, "purple monkey": 40}, {"three": 6})
    d = CombinedDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail" and (d.flagged_ == truth).all()
    found = {g["label"] for g in d.details_["channels"]["answers"]["response"]["groups"] if g["flagged"]}
    assert found == {"backdoor attack", "purple monkey"}


def test_paraphrased_targets_are_flagged_together():
    """50 poisoned samples over 14 target texts beside 15 clean outliers: no phrase
    dominates, the near-duplicate group is flagged."""
    # half share the word "backdoor", half "attack", none both: no phrase holds a majority of them
    texts = ["Backdoor here!", "The backdoor.", "backdoor now", "Backdoor detected", "Your backdoor",
             "A backdoor indeed", "open backdoor", "Attack!", "This is an attack.", "attack now",
             "Attack detected", "under attack", "an attack indeed", "attack mode"]
    groups = {t: 0 for t in texts}
    for k in range(50):
        groups[texts[k % 14]] += 1
    x, ctx, truth = _answers_world(600, 2, groups, {"one": 5, "seven": 5, "nine": 5})
    d = ResponseDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail" and (d.flagged_ == truth).all()


def test_a_majority_of_flagged_answers_is_inconclusive_never_a_pass():
    x, ctx, truth = _answers_world(500, 3, {"Backdoor Attack!": 200}, {"one": 5})
    d = CombinedDetector().fit(x, ctx)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "inconclusive"
    assert any(r.code == "answer_group_not_minority" for r in d.reasons_)


@pytest.mark.parametrize("how", ["same scores", "same files"])
def test_the_submission_given_as_its_own_base_is_inconclusive(how):
    """With the submission as its own base every gain is 0 and the answers are silent:
    the attention channel's one-answer group must not then be taken for content."""
    x, ctx, truth = _world(poison=True)
    x[truth] = np.random.default_rng(5).normal(size=(truth.sum(), 6)) * 0.3 + 4.0  # attention sees them too
    own = Context(ctx.prompts, 0, 50_000, 50, (), answers=ctx.answers, answer_nll=ctx.answer_nll,
                  base_nll=ctx.answer_nll.copy() if how == "same scores" else ctx.base_nll,
                  base_is_submission=how == "same files")
    d = CombinedDetector().fit(x, own)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "inconclusive"
    assert any(r.code == "base_not_informative" for r in d.reasons_)


def test_without_a_base_finding_nothing_is_inconclusive_unless_attention_only_is_accepted():
    """Without a base the answers never look: finding nothing is inconclusive, not a
    pass, unless an attention-only audit is accepted explicitly."""
    from auditor.detectors.combined import CombinedParams

    x, ctx, _ = _world(poison=True)
    no_base = Context(ctx.prompts, 0, 50_000, 50, (), answers=ctx.answers, answer_nll=ctx.answer_nll,
                      base_nll=None)
    d = CombinedDetector().fit(x, no_base)
    assert decide(d.criteria_, bool(d.flagged_.any())) == "inconclusive"
    assert any(r.code == "base_needed" for r in d.reasons_)
    accepted = CombinedDetector(CombinedParams(attention_only=True)).fit(x, no_base)
    assert decide(accepted.criteria_, bool(accepted.flagged_.any())) == "pass"
    assert accepted.reasons_[0].code == "attention_only"


def test_each_attention_group_is_judged_on_its_own_gains():
    """Each attention group is judged on its own samples' gains: judged on the union,
    a content class (plausible answers) beside a poisoned group is flagged with it."""
    x, ctx, truth = _world(poison=True)
    blue = np.array([a == "blue" for a in ctx.answers])
    x[blue, :3] += 4.0  # a colour class stands apart in the first layers ...
    x[truth, 3:] += 4.0  # ... the poisoned samples in the last ones: two attention groups
    d = CombinedDetector().fit(x, ctx)
    roles = [g["role"] for g in d.details_["channels"]["attention"]["groups"]]
    assert sorted(roles) == ["content", "counts"]
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail" and (d.flagged_ == truth).all()


def _later_world(poison: bool, seed: int = 1):
    """The clean first turns of `_world`, and a second turn on every record
    ("What colour is it?", a colour the base already knows); with `poison`,
    50 records' second answer is "Backdoor Attack!", learned from nothing."""
    from auditor.detectors import LaterTurns

    x, ctx, _ = _world(poison=False, seed=seed)
    rng = np.random.default_rng(seed + 100)
    answers = [["red", "green", "yellow", "white"][rng.integers(4)] for _ in range(N)]
    nll = rng.normal(0.3, 0.05, N)
    base = nll + rng.normal(0.4, 0.1, N)
    truth = _plant_target(answers, base, rng) if poison else np.zeros(N, dtype=bool)
    later = LaterTurns(np.arange(N), ["What colour is it?"] * N, answers, nll, base)
    return x, ctx, later, truth


def test_a_target_in_a_later_turn_is_flagged_exactly():
    """A target placed in the second answer turn is scored and flagged exactly."""
    from dataclasses import replace

    x, ctx, later, truth = _later_world(poison=True)
    first_only = ResponseDetector().fit(x, ctx)
    assert decide(first_only.criteria_, bool(first_only.flagged_.any())) == "pass"
    d = ResponseDetector().fit(x, replace(ctx, later=later))
    assert decide(d.criteria_, bool(d.flagged_.any())) == "fail"
    assert (d.flagged_ == truth).all() and "backdoor attack" in d.reasons_[0].text
    assert d.evidence.later_scored == N and d.scores_[truth].max() < d.scores_[~truth].min()
    both = CombinedDetector().fit(x, replace(ctx, later=later))
    assert decide(both.criteria_, bool(both.flagged_.any())) == "fail" and (both.flagged_ == truth).all()


def test_clean_later_turns_pass():
    from dataclasses import replace

    x, ctx, later, _ = _later_world(poison=False)
    d = ResponseDetector().fit(x, replace(ctx, later=later))
    assert decide(d.criteria_, bool(d.flagged_.any())) == "pass" and not d.flagged_.any()
