"""Attention entropy over image tokens (docs/method.md, stage 1)."""

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


def head_entropies(rows: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-layer, per-head entropy (nats) of attention renormalised over image
    tokens: rows (L, H, T) -> (L, H)."""
    a = np.asarray(rows, dtype=np.float64)
    total = a.sum(axis=2, keepdims=True)
    p = a / np.where(total > 0, total, 1.0)
    return -(p * np.log(p + eps)).sum(axis=2)


def attention_mass(rows: np.ndarray, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Where the head-averaged query row puts its mass, before any renormalisation:
    rows (L, H, S) over all S keys; image, text bool masks (S,) (disjoint).
    Returns (3, L): on image tokens, on the instruction text, on the rest
    (system prompt, chat template, BOS); each column sums to 1."""
    a = np.asarray(rows, dtype=np.float64).mean(axis=1)  # (L, S)
    on_image, on_text = a[:, image].sum(axis=1), a[:, text].sum(axis=1)
    return np.stack([on_image, on_text, a.sum(axis=1) - on_image - on_text])
