"""`minority`: a compact minority group across all layers, either direction.

The best two-group split of the robustly standardised per-layer profile
(analysis/group.py) is backdoor evidence only when it is separated beyond what
noise of the same size gives, a minority, compact, and not the samples of a
few instruction texts. After a credible group the rest is searched again
(decoys can take the best split). docs/method.md justifies each threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..analysis.group import (GroupFit, InstructionMatch, fit_group, instruction_match, layer_contrast,
                              null_separations, robust_standardise)
from .base import REMEDY, Context, Criterion, MethodInfo, Reason, decide, direction_text
from .params import check, param

@dataclass(frozen=True)
class MinorityParams:
    # A group is credible backdoor evidence only when it is a minority, separated
    # (beyond a floor and beyond what noise of the same size gives), compact,
    # and not the samples of a few instruction texts (the prompt's doing, not
    # the image's).
    group_max_fraction: float = param(0.35, "largest share of the samples a credible group may hold",
                                      gt=0, le=0.5)
    group_min_separation: float = param(3.0, "least BSI of the group's discriminant score", ge=0)
    group_null_factor: float = param(2.0, "the separation must also reach this times the largest BSI the "
                                          "same fit gives on Gaussian noise of the same size", ge=0)
    group_max_spread_ratio: float = param(1.0, "largest sd of the group's score relative to the rest's",
                                          gt=0)
    group_max_instruction_match: float = param(
        0.9, "a group matching all the samples of the instructions mostly inside it at this Jaccard index "
             "or more is the instructions' doing, not a trigger's", gt=0, le=1)
    instruction_min_samples: int = param(10, "fewest samples an instruction needs to explain a group", ge=2)
    group_max_groups: int = param(3, "after a credible group the rest is searched again; at most this many "
                                     "groups in all", ge=1)
    evidence_effect: float = param(1.0, "least |Cohen's d| between group and rest for an evidence layer",
                                   ge=0)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class GroupEvidence:
    """How a candidate group measured against the criteria."""

    separation: float
    weight: float
    spread_ratio: float
    null_separations: tuple[float, ...]
    required_separation: float  # max(group_min_separation, group_null_factor x max(null))
    credible: bool
    # How far the instruction texts explain the group; None when the instructions
    # were not given, or the group is not a separated minority (nothing to explain).
    instruction: InstructionMatch | None = None
    converged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"separation": self.separation, "weight": self.weight, "spread_ratio": self.spread_ratio,
                "null_separations": list(self.null_separations),
                "required_separation": self.required_separation, "credible": self.credible,
                "instruction": None if self.instruction is None else self.instruction.to_dict()}


@dataclass(frozen=True)
class _Judged:
    fit: GroupFit
    evidence: GroupEvidence
    criteria: tuple[Criterion, ...]
    checks: str  # separated, minority and compact as the reasons word them


def judge(entropy: np.ndarray, prompts: Sequence[str] | None, p: MinorityParams, seed: int,
          fit_sample: int) -> _Judged:
    """The best split of `entropy` (N, L) against the minority criteria;
    `prompts` (N,) are the rows' instructions, or None."""
    fit = fit_group(robust_standardise(entropy), seed, fit_sample)
    null = null_separations(len(entropy), entropy.shape[1], seed)
    required = max(p.group_min_separation, p.group_null_factor * max(null))
    criteria = [
        Criterion("separated", fit.separation, f"≥ {required:.2f} (noise of the same size gives up to "
                                               f"{max(null):.2f})", fit.separation >= required,
                  "separated: BSI of the discriminant score", f"{fit.separation:.2f}"),
        Criterion("minority", fit.weight, f"≤ {p.group_max_fraction:.0%}", fit.weight <= p.group_max_fraction,
                  "minority: weight of the group", f"{fit.weight:.1%}"),
        Criterion("compact", fit.spread_ratio, f"≤ {p.group_max_spread_ratio:.2f}",
                  fit.spread_ratio <= p.group_max_spread_ratio,
                  "compact: group sd / rest sd (geometric mean over all axes)", f"{fit.spread_ratio:.2f}",
                  on_fail="inconclusive"),
    ]
    match = None
    if prompts is not None and criteria[0].holds and criteria[1].holds:
        mask = fit.clustering.flagged
        match = instruction_match([t for t, m in zip(prompts, mask.tolist()) if m], prompts,
                                  p.instruction_min_samples)
        shown = ", ".join(f"“{t[:60]}”" for t in match.texts[:3]) + (", ..." if len(match.texts) > 3 else "")
        criteria.append(Criterion(
            "not_instruction", match.jaccard, f"< {p.group_max_instruction_match:.2f}",
            match.jaccard < p.group_max_instruction_match,
            "not the instruction: Jaccard index of the group with the samples of the instructions mostly in "
            "it"
            + (f" ({shown})" if match.texts else ""), f"{match.jaccard:.2f}"))
    credible = all(c.holds for c in criteria)
    evidence = GroupEvidence(fit.separation, fit.weight, fit.spread_ratio, null, required, credible, match,
                             fit.clustering.mixture.converged)
    checks = (f"separation {fit.separation:.2f} vs >= {required:.2f} required (noise gives up to "
              f"{max(null):.2f}); weight {fit.weight:.1%} vs <= {p.group_max_fraction:.0%}; spread "
              f"{fit.spread_ratio:.2f} x the rest's vs <= {p.group_max_spread_ratio:.2f}")
    return _Judged(fit, evidence, tuple(criteria), checks)


class MinorityDetector:
    name: ClassVar[str] = "minority"
    Params: ClassVar[type] = MinorityParams
    info: ClassVar[MethodInfo] = MethodInfo(
        title="compact minority group",
        help="a compact minority group across all layers, either direction",
        description=(
            "Method minority (bye-audit; docs/method.md): the same per-layer entropies as BYE, robustly "
            "standardised and taken jointly; a two-component full-covariance Gaussian mixture proposes a "
            "split, every sample is projected on the Fisher direction between its components, a "
            "two-component mixture on that projection gives the group; it is flagged only if it is separated "
            "beyond what noise produces, a minority, and more compact than the rest. The paper's procedure "
            "is --method bye."),
        criteria_intro=("Method minority: the best two-group split of the per-layer entropy profiles, taken "
                        "jointly. It is backdoor evidence only if all of these hold:"),
        score_text=("Here: the position along the direction that best separates the candidate group from the "
                    "rest."),
        score_axis="discriminant score (group low)",
        layer_word="evidence",
        layer_definition="Layers where the flagged group differs most from the rest (|Cohen's d| ≥ "
                         "{p.evidence_effect}).",
        limitations=(
            "The minority method looks for a compact minority group whose attention differs from the rest in "
            "either direction (collapsed or dispersed). A backdoor group larger than "
            "{p.group_max_fraction:.0%} of the data, or one no more compact than the rest, is not what it "
            "looks for.",
            "It finds the best group, then looks again in the rest, up to {p.group_max_groups} groups in "
            "all; the search stops at the first split that does not meet the criteria.",
            "A natural, compact minority of the data (e.g. a rare prompt template or one image class) can "
            "meet the same criteria: a fail is evidence to inspect, not proof.",
        ),
        sarif_rule={
            "id": "BYE002",
            "name": "AttentionMinorityGroup",
            "shortDescription": {"text": "Training sample in a compact minority whose attention on the image "
                                         "differs from the rest: suspected backdoor."},
            "fullDescription": {"text": (
                "minority: across all decoder layers, this sample belongs to a small, compact group whose "
                "attention entropy on the image differs from the rest of the data (collapsed or dispersed, "
                "as measured in the result), separated beyond what noise produces and not explained by its "
                "instruction text.")},
            "help": {"text": REMEDY, "markdown": (
                "**Suspected backdoor sample (compact minority).** This record is in a small group of "
                "samples whose attention on the image behaves unlike the rest of the data in the evidence "
                "layers named in the result.\n\n1. Inspect the image and the answer: backdoor samples "
                "usually share a trigger and a target answer.\n2. Train on `cleaned.*` from the audit "
                "bundle, which omits every flagged record.\n3. Audit the new fine-tune.\n\nA natural rare "
                "group (one image class, a rare prompt template) can meet the same criteria: a result is "
                "evidence to inspect, not proof.")},
        },
    )

    # Besides base.py's fitted attributes: each credible group's (N,) rows, the
    # first then the further ones (combined judges them one by one).
    group_rows_: tuple[np.ndarray, ...]

    def __init__(self, params: MinorityParams | None = None) -> None:
        self.params = params or MinorityParams()

    def fit(self, x: np.ndarray, context: Context) -> MinorityDetector:
        """x: (N, L) normalised entropies. Scores: the projection on the Fisher
        direction from the rest to the group, oriented so that the group lies
        low. Flags the group (and any further group found in the rest) only
        when every criterion holds."""
        p = self.params
        judged = judge(x, context.prompts, p, context.seed, context.fit_sample)
        fit, group = judged.fit, judged.evidence
        mask = fit.clustering.flagged
        more = self._further(x, context, mask) if group.credible else []
        for _, rows in more:
            mask = mask | rows
        contrast = layer_contrast(x, mask, fit.direction)
        layers = tuple(c.layer for c in contrast
                       if abs(c.effect) >= p.evidence_effect) if group.credible else ()
        self.scores_, self.clustering_, self.contrast_ = fit.clustering.scores, fit.clustering, contrast
        self.flagged_ = mask if group.credible else np.zeros(len(x), dtype=bool)
        # A separated group whose criteria make the verdict inconclusive (not compact): undecided.
        self.undecided_ = mask if decide(judged.criteria, True) == "inconclusive" else np.zeros(len(x), bool)
        self.criteria_, self.evidence_layers_ = judged.criteria, layers
        self.converged_ = group.converged and all(g.converged for g, _ in more)
        self.details_ = {"group": group.to_dict(), "further_groups": [g.to_dict() for g, _ in more],
                         "layer_contrast": [c.to_dict() for c in contrast]}
        # each credible group's rows, the first then the further ones: a caller may judge them one by one
        self.group_rows_ = ((fit.clustering.flagged, *(rows for _, rows in more)) if group.credible else ())
        self.reasons_ = self._reasons(judged, mask, more, len(x))
        self.evidence_text_ = f"attention on the image {direction_text(contrast, layers)}"
        return self

    def _further(self, x: np.ndarray, context: Context, found: np.ndarray
                 ) -> list[tuple[GroupEvidence, np.ndarray]]:
        """After a credible group (`found`, bool (N,)), look again in the rest:
        a few conspicuous decoys (e.g. three all-black images) can take the
        best split and leave a backdoor group in the data. Each further group
        that meets the same criteria on what remains is returned with its rows
        (bool (N,)), up to `group_max_groups` groups in all; the search stops at
        the first split that does not, or when fewer than `min_samples` rows remain."""
        out: list[tuple[GroupEvidence, np.ndarray]] = []
        taken, prompts = found.copy(), context.prompts
        while 1 + len(out) < self.params.group_max_groups:
            rest = np.flatnonzero(~taken)
            if len(rest) < context.min_samples:
                break
            judged = judge(x[rest], None if prompts is None else [prompts[k] for k in rest.tolist()],
                           self.params, context.seed, context.fit_sample)
            if not judged.evidence.credible:
                break
            rows = np.zeros_like(taken)
            rows[rest[judged.fit.clustering.flagged]] = True
            out.append((judged.evidence, rows))
            taken |= rows
        return out

    def _reasons(self, judged: _Judged, mask: np.ndarray, more: list[tuple[GroupEvidence, np.ndarray]],
                 n: int) -> tuple[Reason, ...]:
        p, fit, group = self.params, judged.fit, judged.evidence
        by_name = {c.name: c for c in judged.criteria}
        detail = judged.checks
        if group.credible:
            top = sorted(self.contrast_, key=lambda c: -abs(c.effect))[:3]
            where = ", ".join(f"layer {c.layer} ({'higher' if c.effect > 0 else 'lower'} entropy, "
                              f"d={c.effect:+.1f})" for c in top)
            out = [Reason("group_flagged",
                          f"a compact minority of {int(fit.clustering.flagged.sum())} of {n} samples stands "
                          f"apart across layers ({detail}); it differs most in {where}")]
            for k, (g, rows) in enumerate(more, start=2):
                out.append(Reason("further_group_flagged", (
                    f"looking again in the rest: group {k}, a compact minority of {int(rows.sum())} more "
                    f"samples (separation {g.separation:.2f} vs >= {g.required_separation:.2f}; weight "
                    f"{g.weight:.1%}; spread {g.spread_ratio:.2f})")))
            return tuple(out)
        match = group.instruction
        if "not_instruction" in by_name and not by_name["not_instruction"].holds and match is not None:
            shown = ", ".join(repr(t[:60]) for t in match.texts[:3]) + (", ..."
                                                                        if len(match.texts) > 3 else "")
            return (Reason("group_is_instruction", (
                f"no credible backdoor group: the best split is the samples of {len(match.texts)} "
                f"instruction text(s) ({shown}): Jaccard {match.jaccard:.2f} vs >= "
                f"{p.group_max_instruction_match:.2f}; the prompt, not the image, separates it ({detail})")),)
        if by_name["separated"].holds and by_name["minority"].holds:
            return (Reason("group_not_compact", (
                f"ambiguous: a separated minority of {int(mask.sum())} of {n} samples stands apart but is "
                f"not more compact than the rest ({detail}); nothing is flagged, inspect it (analysis.json "
                "scores, the report's contrast table)")),)
        failed = [c.name for c in judged.criteria if not c.holds
                  and c.name in ("separated", "minority", "compact")]
        code = "no_separated_group" if not by_name["separated"].holds else "group_not_minority"
        return (Reason(code, f"no credible backdoor group: the best split is not {' / '.join(failed)} "
                             f"({detail})"),)

