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


def shared_phrase(texts: Sequence[str], min_share: float, max_words: int = 8) -> tuple[str, float]:
    """The longest run of words (up to `max_words`) found in at least
    `min_share` of `texts` (normalised), and the share that contains it;
    ('', share of the most common word) when no run reaches `min_share`.
    A shared target answer is its whole text; an inserted sentence is the
    run the answers have in common."""
    words = [normalise(t).split() for t in texts]
    if not words:
        return "", 0.0
    best, best_share = "", 0.0
    for n in range(1, max_words + 1):
        counts: Counter[str] = Counter()
        for w in words:
            counts.update({" ".join(w[i:i + n]) for i in range(len(w) - n + 1)})
        if not counts:
            break
        phrase, c = counts.most_common(1)[0]
        share = c / len(words)
        if share < min_share:
            if n == 1:
                best, best_share = "", share
            break
        best, best_share = phrase, share
    return best, best_share


def contains(texts: Sequence[str], phrase: str) -> np.ndarray:
    """(N,) bool: the normalised text has `phrase` as a run of whole words."""
    if not phrase:
        return np.zeros(len(texts), dtype=bool)
    padded = f" {phrase} "
    return np.array([padded in f" {normalise(t)} " for t in texts], dtype=bool)
