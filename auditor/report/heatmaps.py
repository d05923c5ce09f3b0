"""Attention heatmaps over the image for the samples a report shows."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from ..verdict import Analysis
from .plots import plt, png_bytes

MAX_FLAGGED_HEATMAPS = 24
KEPT_FOR_CONTRAST = 4


def samples_to_show(analysis: Analysis, n_flagged: int = MAX_FLAGGED_HEATMAPS,
                    n_kept: int = KEPT_FOR_CONTRAST) -> list[int]:
    """Record indices: the `n_flagged` most suspicious flagged samples (lowest
    score first, as the report lists them; an inconclusive audit's undecided
    group instead), and `n_kept` kept samples spread evenly over the kept
    scores (lowest to highest), never one of the undecided group."""
    group = analysis.flagged or analysis.undecided
    flagged = [f.index for f in sorted(group, key=lambda f: (f.score, f.index))[:n_flagged]]
    s = analysis.scored
    kept = ~np.isin(s.index, [f.index for f in (*analysis.flagged, *analysis.undecided)])
    index, score = s.index[kept], s.score[kept]
    kept_index = index[np.lexsort((index, score))]  # by score, then record index
    if len(kept_index) and n_kept:
        picks = np.unique(np.linspace(0, len(kept_index) - 1,
                                      min(n_kept, len(kept_index))).round().astype(int))
        flagged += kept_index[picks].tolist()
    return flagged


def heatmap_layers(analysis: Analysis, n_layers: int) -> list[int]:
    """The layers the heatmaps average over, and their caption names: the
    detector's evidence layers (BYE's sensitive layers under `bye`), or every
    layer when there are none."""
    return list(analysis.evidence_layers) or list(range(n_layers))


def attention_grid(rows: np.ndarray, layers: list[int]) -> np.ndarray | None:
    """Head- and layer-averaged attention on the image tokens, renormalised, as a
    square grid: rows (L, H, T) -> (g, g) with g * g == T, or None when T is not square."""
    t = rows.shape[-1]
    g = math.isqrt(t)
    if g * g != t:
        return None
    a = np.asarray(rows, dtype=np.float64)[layers].mean(axis=(0, 1))
    return (a / a.sum()).reshape(g, g)


def heatmap_pngs(image: Image.Image, grid: np.ndarray, size: int = 96) -> tuple[bytes, bytes]:
    """(thumbnail, thumbnail with the attention grid overlaid) as PNG bytes."""
    thumb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    fig, ax = plt.subplots(figsize=(1.2, 1.2), dpi=80)
    ax.imshow(np.asarray(thumb))
    ax.imshow(grid, cmap="inferno", alpha=0.6, extent=(0, size, size, 0), interpolation="nearest")
    ax.axis("off")
    return buf.getvalue(), png_bytes(fig)


def colour_scale_png() -> bytes:
    """The overlays' colour scale: each overlay is scaled to its own sample's
    lowest and highest patch, so the bar is labelled by rank, not by value."""
    fig, ax = plt.subplots(figsize=(3.2, 0.45), dpi=80)
    ax.imshow(np.linspace(0, 1, 256)[None, :], cmap="inferno", aspect="auto")
    ax.set_yticks([])
    ax.set_xticks([0, 255], ["least attended patch", "most attended patch"], fontsize=7)
    return png_bytes(fig)
