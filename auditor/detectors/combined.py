"""`combined`: the attention channel (`minority`) and the answer channel
(`response`) in one verdict.

It fails when either channel finds a credible group, with one exception: an
attention group that is the samples of a few answers (Jaccard with all their
samples >= content_min_match) which the answer channel, given a base, finds
no more learned than comparable answers, is content structure (one colour
class separates in attention like a trigger does), not poison: it passes
and is named. Without a base pass such a group cannot be told from a target
answer: inconclusive. Both channels run with their default parameters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..analysis.response import normalise
from .base import REMEDY, Context, Criterion, MethodInfo, Reason
from .minority import MinorityDetector
from .response import ResponseDetector


@dataclass(frozen=True)
class CombinedParams:
    # An attention group is the samples of a few answers when its Jaccard index
    # with every sample of the answers mostly inside it reaches content_min_match
    # and those are at most content_max_answers answers.
    content_min_match: float = 0.9
    content_max_answers: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.content_min_match <= 1.0:
            raise ValueError(f"content_min_match must be in (0, 1], got {self.content_min_match}")
        if self.content_max_answers < 1:
            raise ValueError(f"content_max_answers must be >= 1, got {self.content_max_answers}")


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


class CombinedDetector:
    name: ClassVar[str] = "combined"
    Params: ClassVar[type] = CombinedParams
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
            "Both channels run with their default parameters; their limitations apply (methods minority "
            "and response in docs/method.md).",
            "Without a base pass (no --adapter or --base) the answer channel has no evidence, and an "
            "attention group that is the samples of a few answers cannot be told from a target answer: "
            "the verdict is then inconclusive.",
            "An attention group is taken for content when it is the samples of at most "
            "{p.content_max_answers} answers (Jaccard ≥ {p.content_min_match}) that the answer channel does "
            "not flag: a clean-label backdoor (the true answer kept) would pass that way.",
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

    def __init__(self, params: CombinedParams | None = None) -> None:
        self.params = params or CombinedParams()

    def fit(self, x: np.ndarray, context: Context) -> CombinedDetector:
        p, n = self.params, len(x)
        att = MinorityDetector().fit(x, context)
        ans = ResponseDetector().fit(x, context)
        att_found = all(c.holds for c in att.criteria_) and bool(att.flagged_.any())
        ans_found = all(c.holds for c in ans.criteria_) and bool(ans.flagged_.any())
        base = ans.evidence.base_pass
        match = None
        content = ambiguous = False
        if att_found and context.answers is not None:
            match = answer_match(att.flagged_, context.answers)
            few = 0 < len(match.answers) <= p.content_max_answers and match.jaccard >= p.content_min_match
            if few and base:
                # content when the answer channel finds these answers no more learned than the rest
                content = not (ans.flagged_ & att.flagged_).any()
            elif few:
                ambiguous = True
        att_counts = att_found and not content
        flagged = (att.flagged_ if att_counts else np.zeros(n, dtype=bool)) | (ans.flagged_ if ans_found
                                                                               else np.zeros(n, dtype=bool))
        found = [name for name, ok in (("attention", att_counts), ("answers", ans_found)) if ok]
        criteria = [Criterion("channel_found", float(len(found)), "≥ 1", bool(found),
                              "channels with a credible group (attention: minority; answers: response)",
                              ", ".join(found) or "none")]
        if ambiguous and match is not None:
            criteria.append(Criterion(
                "not_content", match.jaccard, "a base pass to weigh the answers", False,
                "the attention group is the samples of " + named(match.answers)
                + ": content or a target answer? (needs the base)", f"{match.jaccard:.2f}",
                on_fail="inconclusive"))
        use_answers = ans_found or (not att_counts and base)
        self.scores_ = ans.scores_ if use_answers else att.scores_
        self.clustering_ = None if use_answers else att.clustering_
        self.flagged_ = flagged
        # the attention group that needs the base to be decided, or minority's own undecided group
        self.undecided_ = att.flagged_ if ambiguous else att.undecided_
        self.criteria_ = tuple(criteria)
        self.evidence_layers_ = att.evidence_layers_ if att_counts else ()
        self.contrast_ = att.contrast_ if att_counts else ()
        self.converged_ = att.converged_
        both = att.flagged_ & ans.flagged_ if att_counts and ans_found else np.zeros(n, dtype=bool)
        self.details_ = {
            "channels": {
                "attention": {"credible": att_found, "counted": att_counts, "flagged": int(att.flagged_.sum())
                              if att_found else 0, **att.details_,
                              "answer_match": None if match is None else match.to_dict(),
                              "content": content, "ambiguous": ambiguous},
                "answers": {"credible": ans_found, "flagged": int(ans.flagged_.sum()) if ans_found else 0,
                            **ans.details_},
                "both": int(both.sum()),
            },
        }
        # which channel flagged each sample (analysis.json names them by record: verdict.py)
        self.channel_flags_ = {"attention": att.flagged_ & att_counts, "answers": ans.flagged_ & ans_found}
        reasons = []
        if content and match is not None:
            reasons.append(Reason("group_is_content", (
                f"attention: the best group is the samples of the answer(s) {named(match.answers)}"
                f" (Jaccard {match.jaccard:.2f}), which the fine-tune learned no more than comparable "
                "answers: content structure of the task, not a backdoor")))
        elif ambiguous and match is not None:
            reasons.append(Reason("group_may_be_content", (
                f"attention: the group is the samples of the answer(s) {named(match.answers)}"
                f" (Jaccard {match.jaccard:.2f}); without a base pass (--adapter or --base) a content "
                "class cannot be told from a target answer")))
        reasons += [Reason(r.code, "attention: " + r.text) for r in att.reasons_
                    if not (content and r.code in ("group_flagged", "further_group_flagged"))]
        reasons += [Reason(r.code, "answers: " + r.text) for r in ans.reasons_]
        self.reasons_ = tuple(reasons)
        texts = [t for t, ok in ((att.evidence_text_, att_counts), (ans.evidence_text_, ans_found))
                 if ok and t]
        self.evidence_text_ = "; ".join(texts)
        return self
