"""Stages 2-3 end to end: features -> the configured detector -> verdict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .analysis.cluster import Clustering
from .analysis.group import LayerContrast
from .analysis.profile import LayerProfile, profile_layers
from .analysis.response import AnswerGroup, candidate_groups, enrichment, normalise
from .causes import Cause, CauseGroup, cause_of, group_reasons
from .config import AuditConfig
from .detectors import (DETECTORS, ByeParams, Context, Criterion, Detector, LaterTurns, Reason,
                        ResponseParams, Verdict, decide)
from .features import FeatureSet
from .fileio import Rows

# 2: reasons carry a code ({"code", "text"}); criteria, converged and
# evidence_layers added; "sensitive_layers" is always BYE's BSI layers;
# group/further_groups/layer_contrast only under the minority method.
# (2, later: "undecided" added, the group behind an inconclusive verdict.)
ANALYSIS_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Flag:
    index: int
    id: str
    score: float


@dataclass(frozen=True, eq=False)
class Scores:
    """Every analysed sample's score as columns, input order: a million `Flag`
    objects take seconds to build, and few callers need more than a handful."""

    index: np.ndarray  # (N,) int64 record index
    ids: tuple[str, ...]  # (N,)
    score: np.ndarray  # (N,) float64

    @staticmethod
    def none() -> Scores:
        return Scores(np.zeros(0, np.int64), (), np.zeros(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Flag]:
        return (Flag(i, sid, x) for i, sid, x in zip(self.index.tolist(), self.ids, self.score.tolist()))

    def flags(self, rows: np.ndarray) -> tuple[Flag, ...]:
        """The samples at `rows`: a (N,) bool mask or positions (K,)."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        return tuple(Flag(int(self.index[k]), self.ids[k], float(self.score[k])) for k in rows.tolist())

    def rows(self) -> Rows:
        """As analysis.json lists them: {"index", "id", "score"} per sample."""
        return Rows({"index": self.index, "id": self.ids, "score": self.score})


@dataclass(frozen=True)
class Unanalysed:
    index: int
    id: str
    reason: str
    cause: str  # auditor.causes.Cause


@dataclass(frozen=True)
class Analysis:
    """Stages 2-3's result, the same shape whatever the detector."""

    verdict: Verdict
    reasons: tuple[Reason, ...]
    n_records: int
    n_analysed: int
    n_skipped: int
    n_errors: int
    layers: tuple[LayerProfile, ...]  # the BSI profile of every layer (BYE's stage 2; shown for any method)
    evidence_layers: tuple[int, ...]  # the detector's: BSI-sensitive under bye, evidence layers otherwise
    clustering: Clustering | None  # the detector's score mixture and boundary
    scored: Scores  # every analysed sample's score (empty when the detector scored none)
    flagged: tuple[Flag, ...]
    unanalysed: tuple[Unanalysed, ...]  # skipped, failed or excluded records, with the reason
    config: AuditConfig
    criteria: tuple[Criterion, ...] = ()
    converged: bool = True  # every mixture the detector fitted converged
    evidence_text: str = ""  # what was measured, in words
    contrast: tuple[LayerContrast, ...] = ()  # flagged vs the rest, per layer (when the detector measures it)
    details: Mapping[str, Any] = field(default_factory=dict)  # the detector's extras for analysis.json
    # The group behind an inconclusive verdict (found, not decided): shown by the
    # report, never flagged, never clean contrast. Empty for a pass or a fail.
    undecided: tuple[Flag, ...] = ()

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def detector(self) -> type[Detector]:
        return DETECTORS[self.method]

    @property
    def sensitive_layers(self) -> tuple[int, ...]:
        """BYE's BSI-sensitive layers (whatever the method)."""
        return tuple(p.layer for p in self.layers if p.sensitive)

    @cached_property  # read by the CLI, every report and the JSON outputs: group once
    def causes(self) -> tuple[CauseGroup, ...]:
        """The unanalysed records grouped by cause, largest first."""
        return group_reasons((u.id, u.cause, u.reason) for u in self.unanalysed)

    @property
    def coverage(self) -> float:
        return self.n_analysed / self.n_records if self.n_records else 0.0

    @cached_property
    def flagged_by(self) -> dict[int, list[str]]:
        """Record index -> the channels that flagged it (a method of several
        channels, combined); empty for a method of one."""
        return {d["index"]: d["channels"] for d in self.details.get("flagged_by", [])}

    def flag_groups(self) -> list[tuple[str, tuple[Flag, ...]]]:
        """The flagged samples by group, most suspicious first in each, the group
        holding the most suspicious sample first. A group is the channels that
        flagged a sample ("attention and answers", "answers", ...; combined) or
        the method's one group."""
        groups: dict[str, list[Flag]] = {}
        for f in sorted(self.flagged, key=lambda f: (f.score, f.index)):
            groups.setdefault(" and ".join(self.flagged_by.get(f.index, [])) or self.method, []).append(f)
        return [(label, tuple(flags)) for label, flags in groups.items()]

    def flag_rows(self) -> list[dict[str, Any]]:
        """Every flagged sample as summary.json and flagged.jsonl list it, in
        flag_groups' order: {"index", "id", "score", "group"[, "channels"]}."""
        return [{"index": f.index, "id": f.id, "score": f.score, "group": label,
                 **({"channels": self.flagged_by[f.index]} if f.index in self.flagged_by else {})}
                for label, flags in self.flag_groups() for f in flags]

    def reason_dicts(self) -> list[dict[str, str]]:
        return [r.to_dict() for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        c = self.clustering
        return {
            "schema_version": ANALYSIS_SCHEMA_VERSION,
            "verdict": self.verdict,
            "reasons": self.reason_dicts(),
            "criteria": [c.to_dict() for c in self.criteria],
            "converged": self.converged,
            "counts": {"records": self.n_records, "analysed": self.n_analysed,
                       "skipped": self.n_skipped, "errors": self.n_errors,
                       "flagged": len(self.flagged), "coverage": self.coverage},
            "layers": [p.to_dict() for p in self.layers],
            "sensitive_layers": list(self.sensitive_layers),
            "evidence_layers": list(self.evidence_layers),
            "score_mixture": None if c is None else {**c.mixture.to_dict(), "threshold": c.threshold},
            "scores": self.scored.rows(),
            "flagged": [{"index": f.index, "id": f.id, "score": f.score} for f in self.flagged],
            "undecided": [{"index": f.index, "id": f.id, "score": f.score} for f in self.undecided],
            "unanalysed": [{"index": u.index, "id": u.id, "reason": u.reason, "cause": u.cause}
                           for u in self.unanalysed],
            "unanalysed_by_cause": [g.to_dict() for g in self.causes],
            "config": self.config.to_dict(),
            "method": self.method,
            **self.details,
        }


@dataclass(frozen=True)
class Usable:
    """The rows stages 2-3 analyse, as arrays: input order."""

    index: np.ndarray  # (N,) int, record index
    ids: tuple[str, ...]  # (N,)
    entropy: np.ndarray  # (N, L) normalised entropy, all finite
    rows: np.ndarray | None = None  # (N,) positions in the features table; None: all, in order


def split_usable(features: FeatureSet) -> tuple[Usable, tuple[Unanalysed, ...]]:
    """Rows stages 2-3 can use (status ok, one finite value per layer), and every
    other row with the reason it is left out; input order."""
    n_layers = features.n_layers
    values, lengths = features.layer_values("entropy_norm", n_layers)
    status = np.array(features.column("status"), dtype=object)
    ok = status == "ok"
    whole = lengths == n_layers
    finite = np.isfinite(values).all(axis=1)
    usable = ok & whole & finite
    index, ids, reasons, causes = features.column("index"), features.column("id"), None, None
    left_out = []
    for k in np.flatnonzero(~usable).tolist():
        if not ok[k]:
            reasons, causes = reasons or features.column("reason"), causes or features.column("cause")
            why, cause = reasons[k] or status[k], cause_of(causes[k])[0]
        elif not whole[k]:
            why, cause = f"{lengths[k]} layer values, expected {n_layers}", Cause.BAD_FEATURES
        else:
            why, cause = "non-finite entropy (NaN or inf) in stage 1", Cause.BAD_FEATURES
        left_out.append(Unanalysed(index[k], ids[k], why, str(cause)))
    if not left_out:  # the usual file: no copies
        return Usable(np.asarray(index, dtype=np.int64), tuple(ids), values), ()
    keep = np.flatnonzero(usable)
    return (Usable(np.asarray(index, dtype=np.int64)[keep], tuple(ids[k] for k in keep.tolist()),
                   values[keep], keep), tuple(left_out))


def concentrated_unanalysed(answers: Sequence[str], unanalysed: Sequence[int]) -> AnswerGroup | None:
    """The answer (of all records, (N,)) whose records could not be analysed
    far more often than the others', by the answer channel's group test with its
    default bounds (>= answer_min_count of them, lift >= answer_min_lift, BH q
    <= answer_max_p); None when the unanalysed records are spread."""
    p = ResponseParams()
    norm = [normalise(a) for a in answers]
    missing = np.zeros(len(norm), dtype=bool)
    missing[list(unanalysed)] = True
    groups = candidate_groups(norm, missing, p.answer_min_count, max_phrases=0)
    tested = [g for g in enrichment(groups, missing, np.ones(len(norm), dtype=bool)) if p.concentrated(g)]
    return min(tested, key=lambda g: g.q_value, default=None)


def answer_scores(features: FeatureSet, ok: Usable) -> tuple[np.ndarray, np.ndarray] | None:
    """The analysed rows' answer NLL under the submitted model and under the
    base, (N,) each, NaN where not scored; None when the table has none."""
    cols = []
    for name in ("answer_nll", "base_answer_nll"):
        col = features.table.column(name).to_numpy(zero_copy_only=False)
        col = np.asarray(col, dtype=np.float64)  # nulls become NaN
        cols.append(col if ok.rows is None else col[ok.rows])
    return None if not np.isfinite(cols[0]).any() else (cols[0], cols[1])


def later_scores(features: FeatureSet, ok: Usable, later: Sequence[tuple[tuple[str, str], ...]] | None
                 ) -> LaterTurns | None:
    """The analysed rows' later answer turns with their NLLs (LaterTurns), from
    the features' list columns and `later[i]`, record i's (user text, answer)
    turns; None when no later turn was scored."""
    import pyarrow.compute as pc

    if later is None or not pc.any(pc.greater(pc.list_value_length(features.table.column("later_nll")), 0)
                                   ).as_py():
        return None
    rows, users, texts, nll, base = [], [], [], [], []
    sub = features.table.column("later_nll").to_pylist()
    ref = features.table.column("base_later_nll").to_pylist()
    positions = range(len(ok.index)) if ok.rows is None else ok.rows.tolist()
    for r, (k, i) in enumerate(zip(positions, ok.index.tolist())):
        for t, (user, answer) in enumerate(later[i][:len(sub[k] or ())]):
            rows.append(r)
            users.append(user)
            texts.append(answer)
            nll.append(np.nan if sub[k][t] is None else sub[k][t])
            base.append(np.nan if not ref[k] or ref[k][t] is None else ref[k][t])
    if not np.isfinite(np.asarray(nll, dtype=np.float64)).any():
        return None
    return LaterTurns(np.asarray(rows, dtype=np.int64), users, texts, np.asarray(nll, dtype=np.float64),
                      np.asarray(base, dtype=np.float64))


def answers_cut(features: FeatureSet, ok: Usable) -> Reason | None:
    """A note when answer turns of the analysed rows were cut to the token
    bound or later turns were not scored (counted, with the first cause)."""
    import pyarrow.compute as pc

    table = features.table if ok.rows is None else features.table.take(ok.rows)
    truncated = int(pc.sum(table.column("answers_truncated")).as_py() or 0)
    missing = [m for m in table.column("later_missing").to_pylist() if m]
    if not truncated and not missing:
        return None
    parts = []
    if truncated:
        parts.append(f"{truncated} answer turn{'s were' if truncated > 1 else ' was'} longer than the token "
                     "bound (--max-answer-tokens; default: what fits the context after the prompt) and "
                     "scored on the tokens within it")
    if missing:
        parts.append(f"{len(missing)} record{'s have' if len(missing) > 1 else ' has'} later answer turns "
                     f"that were not scored (e.g. {missing[0]})")
    return Reason("answers_cut", "; ".join(parts))


def analyze(features: FeatureSet, config: AuditConfig, prompts: Sequence[str] | None = None,
            answers: Sequence[str] | None = None,
            later: Sequence[tuple[tuple[str, str], ...]] | None = None) -> Analysis:
    """Stages 2-3 on the normalised entropies with the configured detector
    (auditor/detectors), and the verdict its criteria give; inconclusive when
    coverage is below `min_coverage` or fewer than `min_samples` samples could
    be analysed. `prompts[i]`: the instruction of the record with index i (the
    dataset's samples in input order); with it a detector can tell a group of
    instructions from a group of images. `answers[i]`: its first answer turn
    (the answer channel groups and names them); `later[i]`: its later (user
    text, answer) turns, grouped with the first ones where scored.

    The linear algebra runs on one BLAS thread: the mixtures' sums then come
    out bit for bit the same whatever the machine's core count (a thread count
    changes the order floats are added in), and on these small matrices
    threads cost more than they give.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze(features, config, prompts, answers, later)


def _analyze(features: FeatureSet, config: AuditConfig, prompts: Sequence[str] | None,
             answers: Sequence[str] | None, later: Sequence[tuple[tuple[str, str], ...]] | None) -> Analysis:
    d = config.detection
    n_records = len(features.rows)
    ok, unanalysed = split_usable(features)
    n_ok = len(ok.ids)
    n_skipped = sum(1 for s in features.column("status") if s == "skipped")
    n_errors = len(unanalysed) - n_skipped  # failed in stage 1, or unusable here
    base = dict(n_records=n_records, n_analysed=n_ok, n_skipped=n_skipped, n_errors=n_errors,
                unanalysed=unanalysed, config=config)
    coverage = n_ok / n_records if n_records else 0.0
    if n_ok < d.min_samples:
        reason = Reason("too_few_samples", f"only {n_ok} of {n_records} samples could be analysed; at least "
                                           f"{d.min_samples} are needed to fit the mixtures")
        return Analysis("inconclusive", (reason,), layers=(), evidence_layers=(), clustering=None,
                        scored=Scores.none(), flagged=(), **base)
    entropy = ok.entropy
    # BYE's per-layer profile: its detector's input, and every report's BSI plot.
    bye = d.params if config.method == "bye" else ByeParams()
    layers = profile_layers(entropy, bye.tau, bye.bsi_rule, d.seed, d.fit_sample)
    def of_analysed(values: Sequence[str] | None) -> Sequence[str] | None:
        if values is None:
            return None
        return values if len(ok.index) == len(values) else [values[i] for i in ok.index.tolist()]

    scores = answer_scores(features, ok)
    prov = features.provenance
    same = (prov.base is not None and prov.base.how == "model" and prov.model is not None
            and prov.base.sha256_tree == prov.model.sha256_tree)
    detector = DETECTORS[config.method](d.params, **d.channels).fit(
        entropy, Context(of_analysed(prompts), d.seed, d.fit_sample, d.min_samples, layers,
                         answers=of_analysed(answers), answer_nll=None if scores is None else scores[0],
                         base_nll=None if scores is None else scores[1], base_is_submission=same,
                         later=None if scores is None else later_scores(features, ok, later)))
    reasons = list(detector.reasons_)
    low_coverage = coverage < d.min_coverage
    if low_coverage:
        reasons.append(Reason("coverage_below_min", (
            f"coverage {coverage:.1%} is below {d.min_coverage:.0%}: {n_skipped} skipped and {n_errors} "
            "failed or unusable samples were not analysed")))
    cut = answers_cut(features, ok)
    if cut is not None:
        reasons.append(cut)
    scored = Scores(ok.index, ok.ids, detector.scores_) if len(detector.scores_) else Scores.none()
    # Nothing is flagged unless every criterion holds, whatever a detector marks.
    credible = all(c.holds for c in detector.criteria_)
    flagged = scored.flags(detector.flagged_) if credible and detector.flagged_.any() else ()
    verdict = "inconclusive" if low_coverage else decide(detector.criteria_, bool(flagged))
    if verdict == "pass" and answers is not None and unanalysed:
        hidden = concentrated_unanalysed(answers, [u.index for u in unanalysed])
        if hidden is not None:
            verdict = "inconclusive"
            reasons.append(Reason("unanalysed_concentrated", (
                f"{hidden.outliers} of the {hidden.members} records answering “{hidden.label[:60]}” could "
                f"not be analysed, far more than the other records (q {hidden.q_value:.2g}): a group nobody "
                "looked at cannot pass; fix those records (unanalysed.jsonl names them) and audit again")))
    if not detector.converged_:
        reasons.append(Reason("mixture_not_converged", (
            "a Gaussian mixture did not converge within its iteration limit; the split may not be the best "
            "one (rerun with another --seed to check)")))
    details = dict(detector.details_)
    channels = getattr(detector, "channel_flags_", None)  # a detector of several channels names them
    if channels is not None and flagged:
        details["flagged_by"] = [
            {"index": f.index, "id": f.id, "channels": [c for c, m in channels.items() if m[k]]}
            for f, k in zip(flagged, np.flatnonzero(detector.flagged_).tolist())]
    group = getattr(detector, "undecided_", None)  # optional: most detectors never leave one
    undecided = (scored.flags(group) if verdict == "inconclusive" and not flagged and group is not None
                 and len(scored.index) and group.any() else ())
    return Analysis(verdict, tuple(reasons), layers=layers, evidence_layers=detector.evidence_layers_,
                    clustering=detector.clustering_, scored=scored, flagged=flagged,
                    criteria=detector.criteria_, converged=detector.converged_,
                    evidence_text=detector.evidence_text_, contrast=detector.contrast_,
                    details=details, undecided=undecided, **base)
