"""Detection metrics against ground truth (benchmarks and `bye-audit evaluate` only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


@dataclass(frozen=True)
class Detection:
    n: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    fpr: float

    def to_dict(self) -> dict:
        return asdict(self)


def detection_metrics(flagged: np.ndarray, truth: np.ndarray) -> Detection:
    """Precision, recall, F1 and false-positive rate of bool predictions (N,) vs truth (N,).
    An empty denominator gives 0.0."""
    flagged, truth = np.asarray(flagged, bool), np.asarray(truth, bool)
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    tn = int((~flagged & ~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return Detection(len(truth), tp, fp, fn, tn, precision, recall, f1, fpr)


def layer_aurocs(entropy: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Per layer, AUROC of "low entropy is poison" and of "high entropy is poison".
    entropy (N, L), truth (N,) bool with both classes present."""
    out = []
    for layer in range(entropy.shape[1]):
        low = float(roc_auc_score(truth, -entropy[:, layer]))
        out.append({"layer": layer, "auroc_low_is_poison": low, "auroc_high_is_poison": 1.0 - low})
    return out
