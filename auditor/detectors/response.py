"""`response`: groups of samples whose answers the fine-tune learned far more
than comparable answers: each answer, phrase or set of near-duplicate answers
tested as a group, every group that stands out flagged.

In BYE's threat model every poisoned sample carries the attacker's chosen
answer. The base model the fine-tune started from finds that answer
implausible for the image (a fixed text, or a valid answer of the task given
to an image that shows something else), while the fine-tune has learned it:
its gain (base NLL - submitted NLL, stage 1) stands out against the gains of
the samples it is comparable with (analysis/response.py: the same
instruction, unless that instruction always gets one answer). Flagged: the
outliers that hold a flagged group's answer or phrase. Needs a base pass
(--adapter, or --base DIR): without one the channel has no evidence and says
so. docs/method.md justifies each threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..analysis.response import (AnswerGroup, beyond_background, candidate_groups, enrichment, excess,
                                 normalise, references)
from .base import REMEDY, Context, Criterion, MethodInfo, Reason
from .params import check, param


@dataclass(frozen=True)
class ResponseParams:
    # A sample's gain (base NLL - submitted NLL) is an outlier beyond its
    # reference's median by the fence and the floor; every answer, phrase or
    # set of near-duplicate answers held by enough outliers is a group, tested
    # as a group (lift and a Benjamini-Hochberg corrected hypergeometric p);
    # the flagged groups together must be a minority, else inconclusive.
    answer_fence: float = param(5.0, "an outlier's gain exceeds its reference's median by more than this "
                                     "many robust sds (MAD x 1.4826)", gt=0)
    answer_min_excess: float = param(1.0, "an outlier's gain also exceeds that median by at least this many "
                                          "nats per token", ge=0)
    answer_reference_min: int = param(20, "the reference is the instruction's samples when it has at least "
                                          "this many with a gain (else every sample)", ge=2)
    answer_reference_share: float = param(0.5, "an instruction's samples are the reference only when no "
                                                "answer holds more than this share of them", gt=0, le=1)
    answer_min_count: int = param(5, "fewest outliers that make an answer, phrase or near-duplicate set a "
                                     "group", ge=1)
    answer_max_fraction: float = param(0.35, "largest share of the scored samples the flagged groups may "
                                             "hold together (else inconclusive)", gt=0, le=0.5)
    answer_min_lift: float = param(3.0, "least ratio of a group's share among the outliers to its share "
                                        "among the other scored samples", ge=1)
    answer_max_p: float = param(0.001, "largest Benjamini-Hochberg corrected p of a flagged group",
                                gt=0, lt=1)
    answer_min_similarity: float = param(0.5, "character-trigram Jaccard index of near-duplicate answers",
                                         gt=0, le=1)
    answer_min_change: float = param(0.01, "below this mean |gain| (nats per token) the base cannot weigh "
                                           "the answers (e.g. the submission as its own base): "
                                           "inconclusive", ge=0)

    def concentrated(self, g: AnswerGroup) -> bool:
        """A group concentrated among the outliers: enough of them, specific, beyond chance."""
        return (g.outliers >= self.answer_min_count and g.lift >= self.answer_min_lift
                and g.q_value <= self.answer_max_p)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ResponseEvidence:
    """What the answer channel measured."""

    base_pass: bool
    scored: int  # samples with a gain
    outliers: int
    fraction: float  # flagged / scored
    groups: tuple[AnswerGroup, ...]  # every group tested, in the order found
    flagged: int
    credible: bool
    later_scored: int = 0  # later answer turns (turn 2 on) scored besides the records' first

    @property
    def found(self) -> tuple[AnswerGroup, ...]:
        return tuple(g for g in self.groups if g.flagged)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "groups"},
                "groups": [g.to_dict() for g in self.groups]}


class ResponseDetector:
    name: ClassVar[str] = "response"
    Params: ClassVar[type] = ResponseParams
    info: ClassVar[MethodInfo] = MethodInfo(
        title="learned target answer",
        help="answers the fine-tune learned far more than the base would give them, each answer, phrase "
             "and set of near-duplicate answers tested as a group (needs a base pass: --adapter or --base)",
        description=(
            "Method response (bye-audit; docs/method.md): stage 1 scores each record's answer under the "
            "submitted model and under the base it was fine-tuned from (the adapter disabled, or --base). "
            "The gain (base NLL - submitted NLL per answer token) of each sample is compared with the gains "
            "of the samples with the same instruction (or all samples when that instruction always gets "
            "one answer). Every answer, phrase and set of near-duplicate answers that the outlying samples "
            "hold is tested as a group (its concentration among them, Benjamini-Hochberg corrected), and "
            "every group that stands out is flagged: an answer taught to the model against what the image "
            "shows."),
        criteria_intro=("Method response: the answers the fine-tune learned far more than comparable "
                        "answers. They are backdoor evidence only if all of these hold:"),
        score_text=("Here: minus the robust z of the sample's gain against its reference (lower: learned "
                    "far more than comparable answers)."),
        score_axis="- robust z of the answer's gain (outliers low)",
        layer_word="evidence",
        layer_definition="The answer channel uses no attention layer.",
        limitations=(
            "The response method needs a base pass (--adapter, or --base for a full fine-tune): without "
            "the base it cannot weigh how plausible an answer is, and reports no evidence.",
            "A poisoned answer the base already finds plausible (clean-label poisoning: the true answer of "
            "a triggered image) gains no more than the rest: only the attention channel can see it.",
            "A legitimate new sub-task whose instruction always gets the same answer looks like a text "
            "trigger with a fixed target: a fail is evidence to inspect, not proof.",
        ),
        sarif_rule={
            "id": "BYE003",
            "name": "LearnedTargetAnswer",
            "shortDescription": {"text": "Training sample whose answer the fine-tune learned far more than "
                                         "comparable answers, shared with other such samples: suspected "
                                         "backdoor target."},
            "fullDescription": {"text": (
                "response: the fine-tuned model finds this sample's answer far more likely than the base "
                "model it started from, far beyond the samples with the same instruction, and the answer "
                "(or a phrase in it) is shared by a minority of such samples.")},
            "help": {"text": REMEDY, "markdown": (
                "**Suspected backdoor target answer.** The fine-tune learned this record's answer far more "
                "than comparable answers, and other such records share it.\n\n1. Inspect the image and the "
                "answer: a backdoor pairs a trigger with the attacker's answer.\n2. Train on `cleaned.*` "
                "from the audit bundle, which omits every flagged record.\n3. Audit the new fine-tune.")},
        },
    )

    # Besides base.py's fitted attributes: each sample's gain beyond its
    # reference's median (N,), and what the channel measured.
    excess_: np.ndarray
    evidence: ResponseEvidence

    def __init__(self, params: ResponseParams | None = None) -> None:
        self.params = params or ResponseParams()

    def fit(self, x: np.ndarray, context: Context) -> ResponseDetector:
        """x: (N, L) normalised entropies (unused: this channel reads the
        answers); context.answers, answer_nll and base_nll (N,)."""
        p, n = self.params, len(x)
        gain = context.gain
        self.clustering_, self.contrast_, self.evidence_layers_, self.converged_ = None, (), (), True
        self.flagged_ = np.zeros(n, dtype=bool)
        self.scores_ = np.zeros(n)
        self.excess_ = np.full(n, np.nan)  # gain - its reference's median, nats/token (NaN: not scored)
        if gain is None or context.answers is None:
            self.evidence = ResponseEvidence(False, 0, 0, 0.0, (), 0, False)
            self.criteria_ = (Criterion(
                "base_pass", 0.0, "answers scored under the base", False,
                "base pass: the answers scored under the model the fine-tune started from", "none"),)
            self.reasons_ = (Reason("no_base_pass", (
                "the answers were not scored under a base (no --adapter or --base, or --no-base-pass): the "
                "answer channel cannot tell a learned target from a learned task, and reports no "
                "evidence")),)
            self.evidence_text_, self.details_ = "", {"response": self.evidence.to_dict()}
            return self
        turns = context.turns
        assert turns is not None  # a gain and answers: every turn has a place
        change = float(np.nanmean(np.abs(turns.gain))) if np.isfinite(turns.gain).any() else 0.0
        if context.base_is_submission or change < p.answer_min_change:
            return self._uninformative(context.base_is_submission, change)
        # The units are answer turns (a record's first, and each later one):
        # a target in any turn forms its group; a record is flagged when one
        # of its turns is.
        g_u = turns.gain
        ref = references(g_u, turns.instructions, turns.answers, p.answer_reference_min,
                         p.answer_reference_share)
        z = excess(g_u, ref, min_scale=1e-6)
        excess_u = g_u - ref.centre
        self.excess_ = excess_u[:n]  # the first turn's: what the attention row precedes
        finite = np.isfinite(z)
        out = finite & (z > p.answer_fence) & (excess_u >= p.answer_min_excess)
        worst = np.full(n, np.inf)
        np.minimum.at(worst, turns.row, np.where(finite, -z, np.inf))
        self.scores_ = np.where(np.isfinite(worst), worst, 0.0)
        scored_rows = np.zeros(n, dtype=bool)
        scored_rows[turns.row[finite]] = True
        scored = int(scored_rows.sum())
        answers = [normalise(t) for t in turns.answers]
        groups = candidate_groups(answers, out, p.answer_min_count, min_similarity=p.answer_min_similarity)
        tested = enrichment(groups, out, finite)
        dense = [p.concentrated(g) for g in tested]
        concentrated = [m for (_, _, m), d in zip(groups, dense) if d]
        beyond = iter(beyond_background(concentrated, out, excess_u, p.answer_min_count))
        limit = p.answer_max_p / max(len(concentrated), 1)  # Bonferroni over the concentrated groups
        tested = [g if not d else replace(g, beyond_p=(b := next(beyond)), flagged=b is None or b <= limit)
                  for g, d in zip(tested, dense)]
        found = [g for g in tested if g.flagged]
        held = np.zeros(len(g_u), dtype=bool)
        for (_, _, members), g in zip(groups, tested):
            if g.flagged:
                held |= members
        flagged = np.zeros(n, dtype=bool)
        flagged[turns.row[out & held]] = True
        fraction = float(flagged.sum() / max(scored, 1))
        best = min(tested, key=lambda g: (g.q_value, -g.outliers), default=None)
        criteria = (
            Criterion("learned_far_more", float(out.sum()), f"≥ {p.answer_min_count}",
                      int(out.sum()) >= p.answer_min_count,
                      "learned far more: answers whose gain exceeds their reference's by > "
                      f"{p.answer_fence:g} robust sd and ≥ {p.answer_min_excess:g} nats/token",
                      f"{int(out.sum())}"),
            Criterion("answer_group", 1.0 if best is None else best.q_value, f"≤ {p.answer_max_p:g}",
                      bool(found),
                      "shared: an answer, phrase or set of near-duplicate answers concentrated among them ("
                      f"≥ {p.answer_min_count} of them, share ≥ {p.answer_min_lift:g} x the rest's; "
                      f"{len(tested)} group(s) tested, Benjamini-Hochberg q of the best"
                      + (f": “{best.label[:60]}”, {best.outliers} of {best.members})" if best else ")"),
                      "none tested" if best is None else f"{best.q_value:.2g}"),
            Criterion("minority", fraction, f"≤ {p.answer_max_fraction:.0%}",
                      bool(fraction <= p.answer_max_fraction),
                      "minority: share of the scored samples in the flagged groups", f"{fraction:.1%}",
                      on_fail="inconclusive"),
        )
        credible = bool(all(c.holds for c in criteria))
        if credible:
            self.flagged_ = flagged
        # A majority that shares a learned answer is not something this rule can call clean or poisoned.
        self.undecided_ = flagged if found and not criteria[2].holds else np.zeros(n, dtype=bool)
        self.criteria_ = criteria
        self.evidence = ResponseEvidence(True, scored, int(out.sum()), float(fraction), tuple(tested),
                                         int(self.flagged_.sum()), credible, int(finite[n:].sum()))
        self.details_ = {"response": self.evidence.to_dict()}
        missing = n - scored
        self.reasons_ = self._reasons(criteria, missing, n)
        labels = ", ".join(f"“{g.label[:60]}”" for g in found[:5])
        self.evidence_text_ = (f"answer(s) {labels} learned far more than comparable answers (gain over "
                               "the base)") if credible else ""
        return self

    def _uninformative(self, same_files: bool, change: float) -> ResponseDetector:
        """The base pass cannot weigh the answers: inconclusive with the reason."""
        p = self.params
        self.evidence = ResponseEvidence(True, 0, 0, 0.0, (), 0, False)
        why = ("the base's files are the submission's (identical tree digests)" if same_files else
               f"the answers score the same under the base as under the submission (mean |gain| "
               f"{change:.2g} < {p.answer_min_change:g} nats/token)")
        self.criteria_ = (Criterion(
            "base_differs", change, f"files differ, mean |gain| ≥ {p.answer_min_change:g} nats/token", False,
            "the base is another model: the answers' mean |gain| over it", f"{change:.2g}",
            on_fail="inconclusive"),)
        self.reasons_ = (Reason("base_not_informative", (
            f"{why}: the base pass cannot show which answers the fine-tune learned; pass the model the "
            "fine-tune started from as --base (and --base-sha256 with its published digest)")),)
        self.evidence_text_, self.details_ = "", {"response": self.evidence.to_dict()}
        return self

    def _reasons(self, criteria: tuple[Criterion, ...], missing: int, n: int) -> tuple[Reason, ...]:
        e = self.evidence
        detail = (f"{e.outliers} of {e.scored} scored samples learned far more than comparable answers"
                  if not e.later_scored else
                  f"{e.outliers} of the {e.scored + e.later_scored} answer turns scored ({e.scored} records' "
                  f"first and {e.later_scored} later turns) learned far more than comparable answers")
        found = e.found
        unit = "answers" if e.later_scored else "samples"
        if found:
            detail += "; " + "; ".join(
                f"{g.kind} “{g.label[:60]}”: {g.outliers} of its {g.members} {unit} (q {g.q_value:.2g})"
                for g in found[:5]) + (f"; and {len(found) - 5} more group(s)" if len(found) > 5 else "")
        elif e.groups:
            g = min(e.groups, key=lambda g: (g.q_value, -g.outliers))
            detail += (f"; the most concentrated group, “{g.label[:60]}”, holds {g.outliers} of them "
                       f"(lift {g.lift:.1f}, q {g.q_value:.2g})")
        out = []
        if e.credible:
            out.append(Reason("answer_flagged", (
                f"{e.flagged} samples in {len(found)} answer group(s) the fine-tune learned far more than "
                f"comparable answers: {detail}")))
        elif found:
            out.append(Reason("answer_group_not_minority", (
                f"{e.fraction:.1%} of the scored samples are in answer groups the fine-tune learned far more "
                f"than comparable answers, more than a minority: a majority of poisoned samples or a task "
                f"this rule cannot weigh; inspect them ({detail})")))
        else:
            failed = " / ".join(c.name.replace("_", " ") for c in criteria if not c.holds)
            out.append(Reason("no_learned_answer", f"no credible learned target answer (not {failed}): "
                                                   f"{detail}"))
        if missing:
            out.append(Reason("answers_not_scored", (
                f"{missing} of {n} analysed samples have no answer score (no answer turn, or not scored): "
                "the answer channel did not judge them")))
        return tuple(out)
