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
class AnswerGroup:
    """A candidate answer group and its test: the scored samples holding one
    answer, one phrase, or one of a set of near-duplicate answers."""

    kind: str  # "answer", "phrase" or "near-duplicates"
    label: str  # the normalised answer or phrase; near-duplicates: the answers joined by " | "
    members: int  # scored samples in the group
    outliers: int  # of them, learned far more than comparable answers
    lift: float  # its share among the outliers / its share among the other scored samples
    p_value: float  # hypergeometric: P(at least `outliers` of the group among the outliers by chance)
    q_value: float = 1.0  # Benjamini-Hochberg over every group tested
    # Mann-Whitney p that its outliers' excess gains exceed those of the outliers in no
    # concentrated group (None: not concentrated, or too few such outliers to compare)
    beyond_p: float | None = None
    flagged: bool = False

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _runs(words: list[str], max_words: int) -> set[str]:
    return {" ".join(words[i:i + n]) for n in range(1, max_words + 1) for i in range(len(words) - n + 1)}


def _trigrams(text: str) -> set[str]:
    t = f" {text} "
    return {t[i:i + 3] for i in range(len(t) - 2)}


def near_duplicates(texts: Sequence[str], min_similarity: float) -> list[list[str]]:
    """Sets of at least two distinct texts linked by character-trigram Jaccard
    similarity >= `min_similarity` (single linkage): paraphrases of one
    message ("backdoor attack", "this is a backdoor attack"). Quadratic in
    len(texts): called on the outliers' distinct answers only."""
    distinct = sorted(set(texts))
    grams = [_trigrams(t) for t in distinct]
    parent = list(range(len(distinct)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(distinct)):
        for j in range(i + 1, len(distinct)):
            inter = len(grams[i] & grams[j])
            if inter and inter / len(grams[i] | grams[j]) >= min_similarity:
                parent[root(j)] = root(i)
    sets: dict[int, list[str]] = {}
    for i, t in enumerate(distinct):
        sets.setdefault(root(i), []).append(t)
    return [v for v in sets.values() if len(v) >= 2]


def candidate_groups(answers: Sequence[str], outliers: np.ndarray, min_outliers: int, max_words: int = 8,
                     max_phrases: int = 50, min_similarity: float = 0.5) -> list[tuple[str, str, np.ndarray]]:
    """The groups worth testing, as (kind, label, members (N,) bool) over the
    normalised `answers` (N,): each answer, each run of up to `max_words`
    words (the `max_phrases` most held by the outliers), and each set of
    near-duplicate answers, that at least `min_outliers` of the `outliers`
    (N,) bool hold. A phrase whose holders are exactly one answer's is that
    answer (tested once)."""
    out_idx = np.flatnonzero(outliers)
    held: Counter[str] = Counter()
    for k in out_idx.tolist():
        held.update(_runs(answers[k].split(), max_words))
    distinct = Counter(answers[k] for k in out_idx.tolist())
    groups: list[tuple[str, str, np.ndarray]] = []
    seen: set[bytes] = set()

    def add(kind: str, label: str, members: np.ndarray) -> None:
        key = np.packbits(members).tobytes()
        if key not in seen:
            seen.add(key)
            groups.append((kind, label, members))

    arr = np.asarray(answers, dtype=object)
    for text, count in sorted(distinct.items(), key=lambda kv: (-kv[1], kv[0])):
        if count >= min_outliers and text:  # no answer at all is no answer group
            add("answer", text, arr == text)
    padded = [f" {a} " for a in answers]
    phrases = sorted(((p, c) for p, c in held.items() if c >= min_outliers),
                     key=lambda kv: (-kv[1], -len(kv[0].split()), kv[0]))[:max_phrases]
    for phrase, _ in phrases:
        add("phrase", phrase, np.array([f" {phrase} " in t for t in padded], dtype=bool))
    for texts in near_duplicates([t for t in distinct if t], min_similarity):
        if sum(distinct[t] for t in texts) >= min_outliers:
            add("near-duplicates", " | ".join(texts), np.isin(arr, texts))
    return groups


def enrichment(groups: Sequence[tuple[str, str, np.ndarray]], outliers: np.ndarray, scored: np.ndarray
                ) -> list[AnswerGroup]:
    """Each group's enrichment among the `outliers` (N,) bool, within the
    `scored` samples (N,) bool: the hypergeometric p of at least that many of
    the group's samples among the outliers if outliers fell on samples at
    random, and the Benjamini-Hochberg q over all groups tested (one group of
    many: the rate of false discoveries among the flagged groups is bounded)."""
    from scipy.stats import false_discovery_control, hypergeom

    n, m = int(scored.sum()), int((outliers & scored).sum())
    out: list[AnswerGroup] = []
    for kind, label, members in groups:
        mem = members & scored
        big_k, k = int(mem.sum()), int((mem & outliers).sum())
        rest_share = (big_k - k + 0.5) / (n - m + 1)  # +0.5: a group no other sample holds
        lift = (k / max(m, 1)) / rest_share
        p = float(hypergeom.sf(k - 1, n, big_k, m)) if k else 1.0
        out.append(AnswerGroup(kind, label, big_k, k, float(lift), p))
    if out:
        q = false_discovery_control([g.p_value for g in out], method="bh")
        out = [AnswerGroup(**{**g.__dict__, "q_value": float(v)}) for g, v in zip(out, q)]
    return out


def beyond_background(groups: Sequence[np.ndarray], outliers: np.ndarray, excess_gain: np.ndarray,
                      min_background: int) -> list[float | None]:
    """For each group (members (N,) bool), the one-sided Mann-Whitney p that
    its outliers' excess gains (N,) are larger than those of the background:
    the outliers (N,) bool in none of the `groups`. A target answer contradicts
    what the image shows, which the base knows confidently; the clean samples
    a fine-tune learns far more (the base got them wrong) are the ones the base
    was unsure of, so a class the base finds hard concentrates outliers
    without being learned more than the other outliers. None when fewer than
    `min_background` outliers are in no group (nothing to compare with)."""
    from scipy.stats import mannwhitneyu

    anywhere = np.zeros(len(outliers), dtype=bool)
    for members in groups:
        anywhere |= members
    background = excess_gain[outliers & ~anywhere]
    if len(background) < min_background:
        return [None] * len(groups)
    return [float(mannwhitneyu(excess_gain[members & outliers], background, alternative="greater").pvalue)
            for members in groups]


def contains(texts: Sequence[str], phrase: str) -> np.ndarray:
    """(N,) bool: the normalised text has `phrase` as a run of whole words."""
    if not phrase:
        return np.zeros(len(texts), dtype=bool)
    padded = f" {phrase} "
    return np.array([padded in f" {normalise(t)} " for t in texts], dtype=bool)
