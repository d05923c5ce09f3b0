"""`combined`: the attention channel (`minority`) and the answer channel
(`response`) in one verdict.

It fails when either channel finds a credible group. Each attention group
(the first, and every further one) is judged on its own: one that is the
samples of a few answers (Jaccard with all their samples >=
content_min_match) whose own samples' answers were learned no more than
comparable answers (median excess gain below the answer channel's
answer_min_excess) is content structure (one colour class separates in
attention like a trigger does), not poison: it passes and is named. Without
a base pass such a group cannot be told from a target answer, and finding
nothing is no pass: inconclusive (unless attention_only). Each channel runs
with its own method's parameters (`channels`: set with their options).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..analysis.response import normalise
from .base import REMEDY, Context, Criterion, MethodInfo, Reason
from .minority import MinorityDetector, MinorityParams
from .response import ResponseDetector, ResponseParams
from .params import check, param


@dataclass(frozen=True)
class CombinedParams:
    content_min_match: float = param(0.9, "an attention group is the samples of a few answers when its "
                                          "Jaccard index with every sample of those answers reaches this",
                                     gt=0, le=1)
    content_max_answers: int = param(3, "an attention group is content only when those answers are at "
                                        "most this many", ge=1)
    attention_only: bool = param(False, "accept an audit without a base pass: the answers are then not "
                                        "weighed, and finding nothing passes (without it: inconclusive); "
                                        "recorded in the outputs and on the report's first page")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class AnswerMatch:
    """How far a group is the samples of a few answers."""

    answers: tuple[str, ...]  # the answers mostly inside the group (normalised), most frequent first
    jaccard: float

    def to_dict(self) -> dict[str, Any]:
        return {"answers": list(self.answers), "jaccard": self.jaccard}


def named(answers: Sequence[str]) -> str:
    """The answers as the reasons quote them: “a”, “b”."""
    return ", ".join(f"“{a[:40]}”" for a in answers)


def answer_match(group: np.ndarray, answers: Sequence[str]) -> AnswerMatch:
    """group: (N,) bool; answers: (N,). The answers with more than half their
    samples in the group, and the Jaccard index of the group with all their samples."""
    norm = [normalise(a) for a in answers]
    inside = Counter(a for a, g in zip(norm, group.tolist()) if g)
    total = Counter(norm)
    mostly = [a for a, c in inside.most_common() if c > total[a] / 2]
    union = np.array([a in set(mostly) for a in norm]) | group
    both = np.array([a in set(mostly) for a in norm]) & group
    return AnswerMatch(tuple(mostly), float(both.sum() / max(union.sum(), 1)))


@dataclass(frozen=True)
class GroupRole:
    """How one attention group counts: "counts" (backdoor evidence), "content"
    (the samples of a few answers that were learned no more than comparable
    answers) or "ambiguous" (the samples of a few answers, no base to weigh them)."""

    role: str
    size: int
    match: AnswerMatch
    excess: float  # median over the group's scored samples of gain - reference median (nats/token); NaN

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "size": self.size, "answer_match": self.match.to_dict(),
                "median_excess": None if np.isnan(self.excess) else self.excess}


class CombinedDetector:
    name: ClassVar[str] = "combined"
    Params: ClassVar[type] = CombinedParams
    # The detectors it runs as channels: their parameters apply under --method combined too.
    channels: ClassVar[tuple[str, ...]] = ("minority", "response")
    info: ClassVar[MethodInfo] = MethodInfo(
        title="attention and answers",
        help="the attention channel (minority) and the answer channel (response) in one verdict; a group of "
             "a few plausible answers is content, not poison",
        description=(
            "Method combined (bye-audit; docs/method.md): two channels. Attention: the minority method on "
            "the per-layer entropies. Answers: the response method on the answers' gain over the base. The "
            "audit fails when either finds a credible group. An attention group that is the samples of a "
            "few answers which the base finds as plausible as comparable answers is content structure (a "
            "class of the task), not a backdoor: it passes and is named."),
        criteria_intro="Method combined: each channel's finding, and whether an attention group is content:",
        score_text=("Here: the answer channel's score when it found a group (minus the robust z of the "
                    "answer's gain), else the attention channel's discriminant score."),
        score_axis="score of the channel that found the group (suspicious low)",
        layer_word="evidence",
        layer_definition="Layers where the attention channel's group differs most from the rest (|Cohen's "
                         "d| ≥ 1).",
        limitations=(
            "Each channel runs with its method's parameters (methods minority and response in "
            "docs/method.md), and their limitations apply.",
            "Without a base pass (no --adapter or --base) the answer channel never looks: finding nothing "
            "is then inconclusive, not a pass (unless an attention-only audit is accepted with "
            "--attention-only), and an attention group that is the samples of a few answers cannot be "
            "told from a target answer: inconclusive as well.",
            "An attention group is taken for content when it is the samples of at most "
            "{p.content_max_answers} answers (Jaccard ≥ {p.content_min_match}) whose own samples were "
            "learned no more than comparable answers: a clean-label backdoor (the true answer kept) whose "
            "group is a whole class would pass that way.",
        ),
        sarif_rule={
            "id": "BYE004",
            "name": "AttentionOrAnswerEvidence",
            "shortDescription": {"text": "Training sample flagged by the attention channel or the answer "
                                         "channel: suspected backdoor."},
            "fullDescription": {"text": (
                "combined: this sample is in a credible group of the attention channel (a compact minority "
                "whose attention on the image differs) or of the answer channel (an answer the fine-tune "
                "learned far more than comparable answers, shared by the group); the result names the "
                "channel.")},
            "help": {"text": REMEDY, "markdown": (
                "**Suspected backdoor sample.** The result says which channel flagged it: attention (the "
                "image's attention behaves unlike the rest) or answers (the fine-tune learned its answer "
                "far more than comparable ones).\n\n1. Inspect the image and the answer.\n2. Train on "
                "`cleaned.*` from the audit bundle.\n3. Audit the new fine-tune.")},
        },
    )

    def __init__(self, params: CombinedParams | None = None, minority: MinorityParams | None = None,
                 response: ResponseParams | None = None) -> None:
        self.params = params or CombinedParams()
        self.minority, self.response = minority or MinorityParams(), response or ResponseParams()

    def fit(self, x: np.ndarray, context: Context) -> CombinedDetector:
        n = len(x)
        att = MinorityDetector(self.minority).fit(x, context)
        ans = ResponseDetector(self.response).fit(x, context)
        att_found = all(c.holds for c in att.criteria_) and bool(att.flagged_.any())
        ans_found = all(c.holds for c in ans.criteria_) and bool(ans.flagged_.any())
        base = ans.evidence.base_pass
        judged = [self._judge(rows, context.answers, ans.excess_, base)
                  for rows in (att.group_rows_ if att_found else ())]
        counted = np.zeros(n, dtype=bool)
        for rows, j in zip(att.group_rows_, judged):
            if j.role == "counts":
                counted |= rows
        content_groups = [j for j in judged if j.role == "content"]
        ambiguous_groups = [(rows, j) for rows, j in zip(att.group_rows_, judged) if j.role == "ambiguous"]
        content, ambiguous = bool(content_groups), bool(ambiguous_groups)
        match = judged[0].match if judged else None
        att_counts = bool(counted.any())
        flagged = counted | (ans.flagged_ if ans_found else np.zeros(n, dtype=bool))
        found = [name for name, ok in (("attention", att_counts or ambiguous), ("answers", ans_found)) if ok]
        # What keeps "nothing found" from being a pass: the answer channel's own "cannot decide" (a base
        # that cannot weigh, flagged groups beyond a minority), or no base at all (it never looked).
        cannot = [c for c in ans.criteria_ if not c.holds and c.on_fail == "inconclusive"]
        undecided = [] if att_counts else [replace(c, name=f"answers_{c.name}", text="answers: " + c.text)
                                           for c in cannot]
        no_look = not att_counts and not base and not self.params.attention_only
        criteria = [Criterion("channel_found", float(len(found)), "≥ 1", bool(found),
                              "channels with a credible group (attention: minority; answers: response)",
                              ", ".join(found) or "none",
                              on_fail="inconclusive" if undecided or no_look else "pass")]
        for _, j in ambiguous_groups:
            criteria.append(Criterion(
                "not_content", j.match.jaccard, "a base pass to weigh the answers", False,
                "the attention group is the samples of " + named(j.match.answers)
                + ": content or a target answer? (needs the base)", f"{j.match.jaccard:.2f}",
                on_fail="inconclusive"))
        criteria += undecided
        if no_look:
            criteria.append(Criterion(
                "answers_looked", 0.0, "a base pass (--base; automatic with --adapter)", False,
                "both channels looked: the answers need the model the fine-tune started from", "no base",
                on_fail="inconclusive"))
        use_answers = ans_found or (not att_counts and base)
        self.scores_ = ans.scores_ if use_answers else att.scores_
        self.clustering_ = None if use_answers else att.clustering_
        self.flagged_ = flagged
        # the attention group that needs the base to be decided, or minority's own undecided group
        undecided = np.zeros(n, dtype=bool)
        for rows, _ in ambiguous_groups:
            undecided |= rows
        self.undecided_ = undecided if ambiguous else att.undecided_
        self.criteria_ = tuple(criteria)
        self.evidence_layers_ = att.evidence_layers_ if att_counts else ()
        self.contrast_ = att.contrast_ if att_counts else ()
        self.group_rows_ = att.group_rows_
        self.converged_ = att.converged_
        both = counted & ans.flagged_ if ans_found else np.zeros(n, dtype=bool)
        self.details_ = {
            "channels": {
                "attention": {"credible": att_found, "counted": att_counts, "flagged": int(counted.sum()),
                              **att.details_,
                              "answer_match": None if match is None else match.to_dict(),
                              "groups": [j.to_dict() for j in judged],
                              "content": content, "ambiguous": ambiguous},
                "answers": {"credible": ans_found, "flagged": int(ans.flagged_.sum()) if ans_found else 0,
                            **ans.details_},
                "both": int(both.sum()),
            },
        }
        # which channel flagged each sample (analysis.json names them by record: verdict.py)
        self.channel_flags_ = {"attention": counted, "answers": ans.flagged_ & ans_found}
        reasons = []
        for k, j in enumerate(judged):
            which = "the best group" if k == 0 else f"further group {k}"
            if j.role == "content":
                reasons.append(Reason("group_is_content", (
                    f"attention: {which} ({j.size} samples) is the samples of the answer(s) "
                    f"{named(j.match.answers)} (Jaccard {j.match.jaccard:.2f}), whose answers the fine-tune "
                    f"learned no more than comparable answers (median excess gain {j.excess:.2f} nats/token "
                    f"< {self.response.answer_min_excess:g}): content structure of the task, not a "
                    "backdoor")))
            elif j.role == "ambiguous":
                reasons.append(Reason("group_may_be_content", (
                    f"attention: {which} is the samples of the answer(s) {named(j.match.answers)}"
                    f" (Jaccard {j.match.jaccard:.2f}); without a base pass (--adapter or --base) a content "
                    "class cannot be told from a target answer")))
        if not base and not att_counts:
            reasons.append(Reason("attention_only", (
                "attention-only audit, accepted with --attention-only: the answers were not weighed (no "
                "base pass)")) if self.params.attention_only else Reason("base_needed", (
                "no base pass: the answer channel did not look, so finding nothing is no pass; give the "
                "model the fine-tune started from (--base BASE_DIR), or accept an attention-only audit "
                "(--attention-only)")))
        reasons += [Reason(r.code, "attention: " + r.text) for r in att.reasons_
                    if not (not att_counts and r.code in ("group_flagged", "further_group_flagged"))]
        reasons += [Reason(r.code, "answers: " + r.text) for r in ans.reasons_]
        self.reasons_ = tuple(reasons)
        texts = [t for t, ok in ((att.evidence_text_, att_counts), (ans.evidence_text_, ans_found))
                 if ok and t]
        self.evidence_text_ = "; ".join(texts)
        return self

    def _judge(self, rows: np.ndarray, answers: Sequence[str] | None, excess: np.ndarray,
               base: bool) -> GroupRole:
        """One attention group (rows: (N,) bool) judged on its own samples'
        gains, never on the answer channel's silence or on the union of groups."""
        p = self.params
        match = answer_match(rows, answers) if answers is not None else AnswerMatch((), 0.0)
        values = excess[rows & np.isfinite(excess)]
        median = float(np.median(values)) if len(values) else float("nan")
        few = 0 < len(match.answers) <= p.content_max_answers and match.jaccard >= p.content_min_match
        if not few:
            return GroupRole("counts", int(rows.sum()), match, median)
        if not base or np.isnan(median):
            return GroupRole("ambiguous", int(rows.sum()), match, median)
        learned = median >= self.response.answer_min_excess
        return GroupRole("counts" if learned else "content", int(rows.sum()), match, median)
