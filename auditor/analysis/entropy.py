"""Attention entropy over image tokens (METHOD.md, stage 1)."""

from __future__ import annotations

import numpy as np


def image_attention_entropy(rows: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-layer entropy (nats) of head-averaged attention renormalised over image tokens.

    rows: (L, H, T) attention of the query row onto the T image tokens, per
    layer and head (mass on text tokens already dropped). Returns (L,):
    a = mean_h rows; p = a / sum(a); H = -sum_t p_t log(p_t + eps). Max ln T.
    """
    a = np.asarray(rows, dtype=np.float64).mean(axis=1)  # (L, T)
    total = a.sum(axis=1, keepdims=True)
    p = a / np.where(total > 0, total, 1.0)
    return -(p * np.log(p + eps)).sum(axis=1)


def normalised_entropy(entropy: np.ndarray, n_tokens: int | np.ndarray) -> np.ndarray:
    """H / ln T, in [0, 1]; comparable across samples with different T. T >= 2."""
    return np.asarray(entropy, dtype=np.float64) / np.log(np.asarray(n_tokens, dtype=np.float64))
