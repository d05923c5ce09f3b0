"""The answer channel's maths: how much more the fine-tune learned an answer
than comparable answers (gain against a reference), and what the outlying
answers share.

gain = base NLL - submitted NLL (mean nats per answer token): how much more
likely the fine-tune finds the answer than the model it started from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its sd


def normalise(text: str) -> str:
    """Lower case, words only, single spaces: 'Backdoor Attack!' -> 'backdoor attack'."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Reference:
    """Per sample, the gains it is compared with: location and scale (N,), and
    whether that reference is its instruction's samples (else the whole data)."""

    centre: np.ndarray
    scale: np.ndarray
    by_instruction: np.ndarray  # (N,) bool


def _robust(values: np.ndarray) -> tuple[float, float]:
    """(median, MAD x 1.4826) of finite values; (nan, nan) when none."""
    v = values[np.isfinite(values)]
    if not len(v):
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, MAD_TO_SD * float(np.median(np.abs(v - med)))


def references(gain: np.ndarray, instructions: Sequence[str], answers: Sequence[str], min_samples: int,
               max_answer_share: float) -> Reference:
    """The reference of each sample's gain (N,): the gains of the samples with
    the same instruction when that instruction has at least `min_samples`
    samples with a finite gain and diverse answers (none holds more than
    `max_answer_share` of them), else the gains of all samples.

    An instruction whose samples all get one answer (a rare word in the
    instruction that always brings the same answer: a text trigger) would
    otherwise be its own reference and hide itself; a legitimate sub-task
    with its own instruction and varied answers is compared with itself, not
    with the task the base already knew."""
    n = len(gain)
    centre, scale = np.empty(n), np.empty(n)
    by = np.zeros(n, dtype=bool)
    overall = _robust(gain)
    centre[:], scale[:] = overall
    groups: dict[str, list[int]] = {}
    for k, text in enumerate(instructions):
        groups.setdefault(normalise(text), []).append(k)
    for rows in groups.values():
        idx = np.asarray(rows)
        finite = idx[np.isfinite(gain[idx])]
        if len(finite) < min_samples:
            continue
        top = Counter(normalise(answers[k]) for k in finite.tolist()).most_common(1)[0][1]
        if top > max_answer_share * len(finite):
            continue
        centre[idx], scale[idx] = _robust(gain[finite])
        by[idx] = True
    return Reference(centre, scale, by)


def excess(gain: np.ndarray, ref: Reference, min_scale: float) -> np.ndarray:
    """Robust z of each gain against its reference (N,): (gain - centre) /
    max(scale, min_scale); NaN where the gain is missing."""
    return (gain - ref.centre) / np.maximum(ref.scale, min_scale)


@dataclass(frozen=True)
class Dominant:
    """The answer or phrase the outliers share, against the best competitor."""

    phrase: str  # '' when no phrase is specific to the outliers
    count: int  # outliers holding it
    lift: float  # its share among the outliers / its share among the other samples
    competitor: str  # the most common specific phrase among the outliers without it ('' if none)
    competitor_count: int
    p_value: float  # P(X >= count), X ~ Binomial(count + competitor_count, 1/2); 1.0 without a phrase

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _runs(words: list[str], max_words: int) -> set[str]:
    return {" ".join(words[i:i + n]) for n in range(1, max_words + 1) for i in range(len(words) - n + 1)}


def dominant_phrase(outliers: Sequence[str], others: Sequence[str], min_lift: float, max_words: int = 8,
                    candidates: int = 50, seed: int = 0, max_others: int = 20_000) -> Dominant:
    """The answer or run of words (up to `max_words`) that the `outliers`' answers
    share, tested against the rest of their answers.

    A phrase is specific when its share among the outliers is at least
    `min_lift` times its share among `others` (the other scored answers, at
    most `max_others` of them drawn with `seed`; +0.5 smoothing): a word every
    answer has ("the") is not. The dominant phrase is the specific one most
    outliers hold (longer wins a tie). Its competitor is the answer or phrase
    most held by the outliers that do not hold it (one that more than half of
    the other answers hold, such as a template word, is no answer group); the
    one-sided binomial p says how likely a split at least this uneven is
    between two equally common groups. Only the `candidates` runs most held by the outliers are
    weighed (a free-text dataset has many)."""
    from scipy.stats import binom

    out_words = [normalise(t).split() for t in outliers]
    held: Counter[str] = Counter()
    for w in out_words:
        held.update(_runs(w, max_words))
    if not held:
        return Dominant("", 0, 0.0, "", 0, 1.0)
    rest = list(others)
    if len(rest) > max_others:
        rest = [rest[k] for k in np.random.default_rng(seed).choice(len(rest), max_others, replace=False)]
    rest_padded = [f" {normalise(t)} " for t in rest]
    top = sorted(held.items(), key=lambda kv: (-kv[1], -len(kv[0].split()), kv[0]))[:candidates]

    def share(phrase: str) -> float:
        """Its share among the other answers."""
        return (sum(f" {phrase} " in t for t in rest_padded) + 0.5) / (len(rest_padded) + 1)

    def lift(phrase: str, count: int) -> float:
        return (count / len(out_words)) / share(phrase)

    specific = [(p, c, lift(p, c)) for p, c in top]
    specific = [s for s in specific if s[2] >= min_lift]
    if not specific:
        return Dominant("", 0, 0.0, "", 0, 1.0)
    phrase, count, phrase_lift = specific[0]
    without = [w for w in out_words if f" {phrase} " not in f" {' '.join(w)} "]
    rival: Counter[str] = Counter()
    for w in without:
        rival.update(_runs(w, max_words))
    ranked = sorted(rival.items(), key=lambda kv: (-kv[1], -len(kv[0].split()), kv[0]))[:candidates]
    comp, comp_count = next(((p, c) for p, c in ranked if share(p) <= 0.5), ("", 0))
    p_value = float(binom.sf(count - 1, count + comp_count, 0.5))
    return Dominant(phrase, count, float(phrase_lift), comp, int(comp_count), p_value)


def contains(texts: Sequence[str], phrase: str) -> np.ndarray:
    """(N,) bool: the normalised text has `phrase` as a run of whole words."""
    if not phrase:
        return np.zeros(len(texts), dtype=bool)
    padded = f" {phrase} "
    return np.array([padded in f" {normalise(t)} " for t in texts], dtype=bool)
