"""Stages 2-3 end to end: features -> sensitive layers -> clusters -> verdict."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from ..causes import CauseGroup, group_reasons
from ..config import AuditConfig
from ..extract.features import FeatureSet
from ..fileio import Rows
from .cluster import Clustering, cluster_scores, sensitive_score
from .group import (GroupFit, InstructionMatch, LayerContrast, fit_group, instruction_match, layer_contrast,
                    null_separations, robust_standardise)
from .profile import LayerProfile, profile_layers

Verdict = Literal["pass", "fail", "inconclusive"]
ANALYSIS_SCHEMA_VERSION = 1


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


@dataclass(frozen=True)
class GroupEvidence:
    """How the `minority` detector's candidate group measured against its criteria."""

    separation: float
    weight: float
    spread_ratio: float
    null_separations: tuple[float, ...]
    required_separation: float  # max(group_min_separation, group_null_factor x max(null))
    credible: bool
    # How far the instruction texts explain the group; None when the instructions
    # were not given, or the group is not a separated minority (nothing to explain).
    instruction: InstructionMatch | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"separation": self.separation, "weight": self.weight, "spread_ratio": self.spread_ratio,
                "null_separations": list(self.null_separations),
                "required_separation": self.required_separation, "credible": self.credible,
                "instruction": None if self.instruction is None else self.instruction.to_dict()}


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    reasons: tuple[str, ...]
    n_records: int
    n_analysed: int
    n_skipped: int
    n_errors: int
    layers: tuple[LayerProfile, ...]
    sensitive_layers: tuple[int, ...]
    clustering: Clustering | None
    scored: Scores  # every analysed sample's score (empty without sensitive layers)
    flagged: tuple[Flag, ...]
    unanalysed: tuple[Unanalysed, ...]  # skipped, failed or excluded records, with the reason
    config: AuditConfig
    # "minority" only: the candidate group's measurements and the per-layer contrast
    group: GroupEvidence | None = None
    contrast: tuple[LayerContrast, ...] = ()  # flagged vs the rest, per layer
    further_groups: tuple[GroupEvidence, ...] = ()  # credible groups found by looking again in the rest

    @property
    def method(self) -> str:
        return self.config.method

    @cached_property  # read by the CLI, every report and the JSON outputs: group once
    def causes(self) -> tuple[CauseGroup, ...]:
        """The unanalysed records grouped by cause, largest first."""
        return group_reasons((u.id, u.reason) for u in self.unanalysed)

    @property
    def coverage(self) -> float:
        return self.n_analysed / self.n_records if self.n_records else 0.0

    def to_dict(self) -> dict[str, Any]:
        c = self.clustering
        return {
            "schema_version": ANALYSIS_SCHEMA_VERSION,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "counts": {"records": self.n_records, "analysed": self.n_analysed,
                       "skipped": self.n_skipped, "errors": self.n_errors,
                       "flagged": len(self.flagged), "coverage": self.coverage},
            "layers": [p.to_dict() for p in self.layers],
            "sensitive_layers": list(self.sensitive_layers),
            "score_mixture": None if c is None else {**c.mixture.to_dict(), "threshold": c.threshold},
            "scores": self.scored.rows(),
            "flagged": [{"index": f.index, "id": f.id, "score": f.score} for f in self.flagged],
            "unanalysed": [{"index": u.index, "id": u.id, "reason": u.reason} for u in self.unanalysed],
            "unanalysed_by_cause": [g.to_dict() for g in self.causes],
            "config": self.config.to_dict(),
            "method": self.method,
            "group": None if self.group is None else self.group.to_dict(),
            "further_groups": [g.to_dict() for g in self.further_groups],
            "layer_contrast": [c.to_dict() for c in self.contrast],
        }


@dataclass(frozen=True)
class Usable:
    """The rows stages 2-3 analyse, as arrays: input order."""

    index: np.ndarray  # (N,) int, record index
    ids: tuple[str, ...]  # (N,)
    entropy: np.ndarray  # (N, L) normalised entropy, all finite


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
    index, ids, reasons = features.column("index"), features.column("id"), None
    left_out = []
    for k in np.flatnonzero(~usable).tolist():
        if not ok[k]:
            reasons = reasons or features.column("reason")
            why = reasons[k] or status[k]
        elif not whole[k]:
            why = f"{lengths[k]} layer values, expected {n_layers}"
        else:
            why = "non-finite entropy (NaN or inf) in stage 1"
        left_out.append(Unanalysed(index[k], ids[k], why))
    if not left_out:  # the usual file: no copies
        return Usable(np.asarray(index, dtype=np.int64), tuple(ids), values), ()
    keep = np.flatnonzero(usable)
    return (Usable(np.asarray(index, dtype=np.int64)[keep], tuple(ids[k] for k in keep.tolist()),
                   values[keep]), tuple(left_out))


def analyze(features: FeatureSet, config: AuditConfig, prompts: Sequence[str] | None = None) -> Analysis:
    """Stages 2-3 on the normalised entropies, with a verdict: the `minority`
    detector, or BYE's procedure (`method="bye"`).

    bye: pass when no layer is sensitive, fail when a low-entropy cluster was
    flagged. minority: see _analyze_minority. Either: inconclusive when coverage
    is below config.min_coverage or fewer than config.min_samples samples could
    be analysed. `prompts[i]`: the instruction of the record with index i (the
    dataset's samples in input order); with it `minority` can tell a group of
    instructions from a group of images.

    The linear algebra runs on one BLAS thread: the mixtures' sums then come
    out bit for bit the same whatever the machine's core count (a thread count
    changes the order floats are added in), and on these small matrices
    threads cost more than they give (the noise calibration ran 9.3 s on two
    threads, 1.4 s on one).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _analyze(features, config, prompts)


def _analyze(features: FeatureSet, config: AuditConfig, prompts: Sequence[str] | None) -> Analysis:
    n_records = len(features.rows)
    ok, unanalysed = split_usable(features)
    n_ok = len(ok.ids)
    n_skipped = sum(1 for s in features.column("status") if s == "skipped")
    n_errors = len(unanalysed) - n_skipped  # failed in stage 1, or unusable here
    base = dict(n_records=n_records, n_analysed=n_ok, n_skipped=n_skipped, n_errors=n_errors,
                unanalysed=unanalysed, config=config)
    coverage = n_ok / n_records if n_records else 0.0
    if n_ok < config.min_samples:
        reason = (f"only {n_ok} of {n_records} samples could be analysed; at least "
                  f"{config.min_samples} are needed to fit the mixtures")
        return Analysis("inconclusive", (reason,), layers=(), sensitive_layers=(), clustering=None,
                        scored=Scores.none(), flagged=(), **base)
    entropy = ok.entropy
    layers = profile_layers(entropy, config.tau, config.bsi_rule, config.seed, config.fit_sample)
    sensitive = tuple(p.layer for p in layers if p.sensitive)
    reasons: list[str] = []
    low_coverage = coverage < config.min_coverage
    if low_coverage:
        reasons.append(f"coverage {coverage:.1%} is below {config.min_coverage:.0%}: "
                       f"{n_skipped} skipped and {n_errors} failed or unusable samples were not analysed")
    if config.method == "minority":
        return _analyze_minority(ok, entropy, layers, reasons, low_coverage, base, config, prompts)
    if not sensitive:
        best = max(layers, key=lambda p: p.bsi)
        rule = f"BSI >= {config.tau}" if config.bsi_rule == "paper" else "|mu1 - mu2| > 2 (s1 + s2)"
        reasons.insert(0, f"no layer is sensitive ({rule}); the largest BSI is "
                          f"{best.bsi:.2f} at layer {best.layer}")
        verdict: Verdict = "inconclusive" if low_coverage else "pass"
        return Analysis(verdict, tuple(reasons), layers=layers, sensitive_layers=(),
                        clustering=None, scored=Scores.none(), flagged=(), **base)
    clustering = cluster_scores(sensitive_score(entropy, list(sensitive)), config.seed, config.fit_sample)
    scored = Scores(ok.index, ok.ids, clustering.scores)
    flagged = scored.flags(clustering.flagged)
    m = clustering.mixture
    reasons.insert(0, (
        f"{len(sensitive)} sensitive layer(s) {list(sensitive)}; {len(flagged)} of {n_ok} samples "
        f"fall in the low-entropy cluster (mean score {m.means[0]:.3f} vs {m.means[1]:.3f}, "
        f"weight {m.weights[0]:.1%})"))
    verdict = "inconclusive" if low_coverage else ("fail" if flagged else "pass")
    return Analysis(verdict, tuple(reasons), layers=layers, sensitive_layers=sensitive,
                    clustering=clustering, scored=scored, flagged=flagged, **base)


@dataclass(frozen=True)
class _Judged:
    fit: GroupFit
    evidence: GroupEvidence
    checks: dict[str, tuple[bool, str]]
    explained: bool  # the instruction texts explain the group


def _judge(entropy: np.ndarray, prompts: Sequence[str] | None, config: AuditConfig) -> _Judged:
    """The best split of `entropy` (N, L) against the minority criteria;
    `prompts` (N,) are the rows' instructions, or None."""
    fit = fit_group(robust_standardise(entropy), config.seed, config.fit_sample)
    null = null_separations(len(entropy), entropy.shape[1], config.seed)
    required = max(config.group_min_separation, config.group_null_factor * max(null))
    checks = {
        "separated": (fit.separation >= required,
                      f"separation {fit.separation:.2f} vs >= {required:.2f} required "
                      f"(noise gives up to {max(null):.2f})"),
        "minority": (fit.weight <= config.group_max_fraction,
                     f"weight {fit.weight:.1%} vs <= {config.group_max_fraction:.0%}"),
        "compact": (fit.spread_ratio <= config.group_max_spread_ratio,
                    f"spread {fit.spread_ratio:.2f} x the rest's vs <= {config.group_max_spread_ratio:.2f}"),
    }
    match = None
    if prompts is not None and checks["separated"][0] and checks["minority"][0]:
        mask = fit.clustering.flagged
        match = instruction_match([p for p, m in zip(prompts, mask.tolist()) if m], prompts,
                                  config.instruction_min_samples)
    explained = match is not None and match.jaccard >= config.group_max_instruction_match
    credible = all(ok_ for ok_, _ in checks.values()) and not explained
    evidence = GroupEvidence(fit.separation, fit.weight, fit.spread_ratio, null, required, credible, match)
    return _Judged(fit, evidence, checks, explained)


def further_groups(entropy: np.ndarray, prompts: Sequence[str] | None, found: np.ndarray,
                   config: AuditConfig) -> list[tuple[GroupEvidence, np.ndarray]]:
    """After a credible group (`found`, bool (N,)), look again in the rest: a few
    conspicuous decoys (e.g. three all-black images) can take the best split
    and leave a backdoor group in the data. Each further group that meets the
    same criteria on what remains is returned with its rows (bool (N,)), up to
    `config.group_max_groups` groups in all; the search stops at the first
    split that does not, or when fewer than `config.min_samples` rows remain."""
    out: list[tuple[GroupEvidence, np.ndarray]] = []
    taken = found.copy()
    while 1 + len(out) < config.group_max_groups:
        rest = np.flatnonzero(~taken)
        if len(rest) < config.min_samples:
            break
        judged = _judge(entropy[rest], None if prompts is None else [prompts[k] for k in rest.tolist()], config)
        if not judged.evidence.credible:
            break
        rows = np.zeros_like(taken)
        rows[rest[judged.fit.clustering.flagged]] = True
        out.append((judged.evidence, rows))
        taken |= rows
    return out


def _analyze_minority(ok: Usable, entropy: np.ndarray, layers: tuple[LayerProfile, ...],
                      reasons: list[str], low_coverage: bool, base: dict[str, Any],
                      config: AuditConfig, prompts: Sequence[str] | None) -> Analysis:
    """The `minority` detector (analysis/group.py) and its verdict: fail only
    when the best group is a separated, compact minority that the instruction
    texts do not explain (every further such group in the rest is flagged
    too); inconclusive when it is a separated minority that is not compact
    (ambiguous evidence); pass otherwise."""
    analysed = None
    if prompts is not None:
        analysed = prompts if len(ok.index) == len(prompts) else [prompts[i] for i in ok.index.tolist()]
    judged = _judge(entropy, analysed, config)
    fit, group, checks, explained = judged.fit, judged.evidence, judged.checks, judged.explained
    match, credible = group.instruction, group.credible
    mask = fit.clustering.flagged
    more = further_groups(entropy, analysed, mask, config) if credible else []
    for _, rows in more:
        mask = mask | rows
    ambiguous = False
    contrast = layer_contrast(entropy, mask, fit.direction)
    evidence = tuple(c.layer for c in contrast if abs(c.effect) >= config.evidence_effect)
    scored = Scores(ok.index, ok.ids, fit.clustering.scores)
    flagged = scored.flags(mask) if credible else ()
    detail = "; ".join(text for _, text in checks.values())
    if credible:
        top = sorted(contrast, key=lambda c: -abs(c.effect))[:3]
        where = ", ".join(f"layer {c.layer} ({'higher' if c.effect > 0 else 'lower'} entropy, d={c.effect:+.1f})"
                          for c in top)
        first = int(fit.clustering.flagged.sum())
        reasons.insert(0, f"a compact minority of {first} of {len(ok.ids)} samples stands apart across "
                          f"layers ({detail}); it differs most in {where}")
        for k, (g, rows) in enumerate(more, start=2):
            reasons.insert(k - 1, f"looking again in the rest: group {k}, a compact minority of {int(rows.sum())} "
                                  f"more samples (separation {g.separation:.2f} vs >= {g.required_separation:.2f}; "
                                  f"weight {g.weight:.1%}; spread {g.spread_ratio:.2f})")
    elif explained:
        shown = ", ".join(repr(t[:60]) for t in match.texts[:3]) + (", ..." if len(match.texts) > 3 else "")
        reasons.insert(0, f"no credible backdoor group: the best split is the samples of {len(match.texts)} "
                          f"instruction text(s) ({shown}): Jaccard {match.jaccard:.2f} vs >= "
                          f"{config.group_max_instruction_match:.2f}; the prompt, not the image, separates it "
                          f"({detail})")
    elif checks["separated"][0] and checks["minority"][0]:
        reasons.insert(0, f"ambiguous: a separated minority of {int(mask.sum())} of {len(ok.ids)} samples stands "
                          f"apart but is not more compact than the rest ({detail}); nothing is flagged, "
                          "inspect it (analysis.json scores, the report's contrast table)")
        ambiguous = True
    else:
        failed = ", ".join(name for name, (ok_, _) in checks.items() if not ok_)
        reasons.insert(0, f"no credible backdoor group: the best split is not {failed.replace(', ', ' / ')} "
                          f"({detail})")
    verdict: Verdict = ("inconclusive" if low_coverage or ambiguous else ("fail" if flagged else "pass"))
    return Analysis(verdict, tuple(reasons), layers=layers, sensitive_layers=evidence if credible else (),
                    clustering=fit.clustering, scored=scored, flagged=flagged, group=group,
                    contrast=contrast, further_groups=tuple(g for g, _ in more), **base)
