"""What every detector is: an estimator on the (N, L) entropy matrix, in
scikit-learn's manner, and the records it leaves behind.

A detector class has a frozen `Params` record (checked in its own
`__post_init__`), a `MethodInfo` with its words (report, SARIF, CLI), and
`fit(X, context)`, which sets the fitted attributes:

- `scores_` (N,) float: one score per sample, **lower is more suspicious**;
- `flagged_` (N,) bool: the samples it flags (none unless every criterion holds);
- `criteria_`: the `Criterion` records its verdict rests on;
- `reasons_`: its finding as `Reason(code, text)`, most important first;
- `evidence_layers_`: the layers the evidence is in (BSI-sensitive layers for
  `bye`, evidence layers for the others: `info.layer_word`);
- `evidence_text_`: what was measured in words (SARIF results, report);
- `converged_`: whether every mixture it fitted converged;
- `clustering_`: the score mixture and boundary (the report's histogram), or None;
- `contrast_`: flagged vs rest per layer (may be empty);
- `details_`: JSON-ready extras for analysis.json (may be empty);
- `undecided_` (N,) bool, optional: a group the detector found but could not
  decide (the samples behind an inconclusive verdict: the report shows them,
  never as clean contrast); absent or all False when there is none.

A detector may set more for the detectors that run it as a channel, declared
in its own class: `minority`'s `group_rows_` (each credible group's rows),
`response`'s `excess_` and `evidence`.

The verdict is derived from the criteria alone (`decide`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from ..analysis.cluster import Clustering
from ..analysis.group import LayerContrast
from ..analysis.profile import LayerProfile

Verdict = Literal["pass", "fail", "inconclusive"]

# What to do with a flagged record, whatever the method (SARIF rules' help text).
REMEDY = ("Remove the record from the training data (cleaned.* in the audit's output folder already omits "
          "every flagged record), inspect its image for a trigger, fine-tune again and audit the new model. "
          "report.html / report.pdf show the layer evidence and the sample's attention heatmap.")


@dataclass(frozen=True)
class Reason:
    """A verdict's reason: a stable machine-readable `code` and the sentence."""

    code: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True)
class Criterion:
    """One condition a detector's evidence must meet.

    `on_fail`: the verdict a failed criterion leads to: "pass" (there is no
    backdoor evidence of this kind) or "inconclusive" (evidence exists but is
    ambiguous)."""

    name: str  # stable, e.g. "separated"
    measured: float
    required: str  # the bound, e.g. ">= 4.12 (noise of the same size gives up to 1.90)"
    holds: bool
    text: str  # what is measured, e.g. "separated: BSI of the discriminant score"
    shown: str  # `measured` as the report prints it, e.g. "30.8%"
    on_fail: Literal["pass", "inconclusive"] = "pass"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measured": self.measured, "required": self.required, "holds": self.holds,
                "text": self.text, "on_fail": self.on_fail}


@dataclass(frozen=True)
class MethodInfo:
    """A detector's words, everywhere it is named. Strings with `{p.NAME}` are
    formatted with the detector's parameters record."""

    title: str  # e.g. "compact minority group"
    help: str  # one line for `--method`'s help
    description: str  # the report's "Method" paragraph
    criteria_intro: str  # above the criteria table
    score_text: str  # what the score is (glossary)
    score_axis: str  # the score histogram's x label
    layer_word: Literal["sensitive", "evidence"]  # "sensitive layers" only for BYE's BSI layers
    layer_definition: str  # glossary entry for those layers
    limitations: tuple[str, ...]
    sarif_rule: dict[str, Any]  # SARIF reportingDescriptor: id, name, shortDescription, fullDescription, help
    many_flagged_note: str = ""  # why a large flagged share may be this method's doing (report warning)

    def formatted(self, text: str, params: Any) -> str:
        return text.format(p=params)


@dataclass(frozen=True)
class LaterTurns:
    """The analysed rows' later answer turns (turn 2 on), one entry per turn
    (M,): its row in the matrix, its user text and answer, and its mean token
    NLL under the submitted model and under the base (NaN: not scored)."""

    row: np.ndarray  # (M,) int
    instructions: Sequence[str]
    answers: Sequence[str]
    answer_nll: np.ndarray  # (M,)
    base_nll: np.ndarray  # (M,)


@dataclass(frozen=True)
class Turns:
    """Every answer turn of the analysed rows, the first ones first (U = N + M):
    the row it belongs to, the instruction it answers, the answer, and its gain
    (base NLL - submitted NLL, NaN where not scored)."""

    row: np.ndarray  # (U,) int
    instructions: Sequence[str]
    answers: Sequence[str]
    gain: np.ndarray  # (U,)


@dataclass(frozen=True)
class Context:
    """What a detector may use besides the matrix: each row's instruction
    (None when not given), the mixtures' seed and fit cap, the sample floor,
    the per-layer BSI profile (computed once for the report), and each row's
    answer with its stage-1 scores (mean token NLL under the submitted model
    and under the base, (N,) with NaN where not scored; None when the
    features have none)."""

    prompts: Sequence[str] | None
    seed: int
    fit_sample: int
    min_samples: int
    layers: tuple[LayerProfile, ...]
    answers: Sequence[str] | None = None
    answer_nll: np.ndarray | None = None
    base_nll: np.ndarray | None = None
    # the base pass ran on files identical to the submission's (their tree digests match)
    base_is_submission: bool = False
    later: LaterTurns | None = None  # the later answer turns of multi-turn records (None: none)

    @property
    def gain(self) -> np.ndarray | None:
        """base NLL - submitted NLL (N,), NaN where either is missing; None without a base pass."""
        if self.answer_nll is None or self.base_nll is None or not np.isfinite(self.base_nll).any():
            return None
        return self.base_nll - self.answer_nll

    @property
    def turns(self) -> Turns | None:
        """Every answer turn with its gain, the first turns' (N) then the later
        ones'; None without a base pass or answers."""
        gain = self.gain
        if gain is None or self.answers is None:
            return None
        n = len(gain)
        prompts = list(self.prompts) if self.prompts is not None else [""] * n
        t = self.later
        if t is None or not len(t.row):
            return Turns(np.arange(n), prompts, list(self.answers), gain)
        return Turns(np.concatenate([np.arange(n), t.row]), prompts + list(t.instructions),
                     list(self.answers) + list(t.answers),
                     np.concatenate([gain, t.base_nll - t.answer_nll]))


class Detector(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type]  # frozen; each field declared with detectors.params.param
    info: ClassVar[MethodInfo]
    # Optional: registered detectors it runs inside (their Params are passed to
    # __init__ by name, and their CLI options apply to this method too).
    channels: ClassVar[tuple[str, ...]]

    scores_: np.ndarray
    flagged_: np.ndarray
    criteria_: tuple[Criterion, ...]
    reasons_: tuple[Reason, ...]
    evidence_layers_: tuple[int, ...]
    evidence_text_: str
    converged_: bool
    clustering_: Clustering | None
    contrast_: tuple[LayerContrast, ...]
    details_: dict[str, Any]

    def __init__(self, params: Any, **channels: Any) -> None: ...

    def fit(self, x: np.ndarray, context: Context) -> Detector: ...


def channels_of(detector: type) -> tuple[str, ...]:
    """The registered detectors `detector` runs as channels (none unless it declares them)."""
    return tuple(getattr(detector, "channels", ()))


def decide(criteria: Sequence[Criterion], any_flagged: bool) -> Verdict:
    """The verdict from the criteria: a failed criterion that means "no
    evidence" passes; otherwise a failed one that means "ambiguous" is
    inconclusive; when all hold, fail if anything is flagged."""
    failed = [c for c in criteria if not c.holds]
    if any(c.on_fail == "pass" for c in failed):
        return "pass"
    if failed:
        return "inconclusive"
    return "fail" if any_flagged else "pass"


def direction_text(contrast: Sequence[LayerContrast], layers: Sequence[int]) -> str:
    """How the group's attention on the image differs from the rest's, each of
    `layers` described by the sign of its own Cohen's d: 'more collapsed
    (lower entropy) than the rest in layer 3; more dispersed (higher entropy)
    than the rest in layers 4, 5, 6' (a mean over layers would call layer 3
    dispersed)."""
    effect = {c.layer: c.effect for c in contrast}
    parts = []
    for word, side in (("more collapsed (lower entropy)", [k for k in layers if effect.get(k, 0.0) < 0]),
                       ("more dispersed (higher entropy)", [k for k in layers if effect.get(k, 0.0) > 0])):
        if side:
            parts.append(f"{word} than the rest in layer{'s' if len(side) > 1 else ''} "
                         f"{', '.join(map(str, side))}")
    return "; ".join(parts) or "no different from the rest in any layer"
