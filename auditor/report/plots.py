"""Evidence plots as PNG bytes (matplotlib, Agg backend, no global state leaks)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes; closes the figure."""
    buf = io.BytesIO()
    # No timestamps or version strings in the PNG, so reports are reproducible.
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def bsi_plot(bsi: list[float], sensitive: list[int], tau: float) -> bytes:
    """Bar chart of BSI per decoder layer, tau line, sensitive layers highlighted."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    colors = ["#c0392b" if i in sensitive else "#7f8c8d" for i in range(len(bsi))]
    ax.bar(range(len(bsi)), bsi, color=colors)
    ax.axhline(tau, color="#2c3e50", linestyle="--", linewidth=1, label=f"tau = {tau}")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("BSI")
    ax.set_xticks(range(len(bsi)))
    ax.legend(loc="upper left", frameon=False)
    return png_bytes(fig)


def score_histogram(scores: np.ndarray, flagged: np.ndarray, threshold: float,
                    components: list[tuple[float, float, float]] | None = None,
                    xlabel: str = "mean normalised entropy over sensitive layers") -> bytes:
    """Histogram of per-sample scores (N,), flagged vs kept, with the decision
    boundary and, given (weight, mean, variance) per component, the two
    mixture components' densities scaled to sample counts."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    bins = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[~flagged], bins=bins, color="#7f8c8d", label="kept")
    ax.hist(scores[flagged], bins=bins, color="#c0392b", label="flagged")
    x = np.linspace(bins[0], bins[-1], 400)
    for k, (w, mu, var) in enumerate(components or []):
        density = np.exp(-0.5 * (x - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)
        ax.plot(x, w * len(scores) * (bins[1] - bins[0]) * density, color="#2c3e50",
                linestyle="-" if k == 0 else ":", linewidth=1.2,
                label="low component" if k == 0 else "high component")
    ax.axvline(threshold, color="#2c3e50", linestyle="--", linewidth=1, label="boundary")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.legend(frameon=False)
    return png_bytes(fig)


def entropy_by_layer(kept: np.ndarray, flagged: np.ndarray, shaded: list[int],
                     word: str = "sensitive") -> bytes:
    """Mean +- sd of the normalised entropy per layer for kept (Nk, L) and
    flagged (Nf, L) samples; the `shaded` layers (the method's `word` layers) shaded."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    layers = np.arange(kept.shape[1] if kept.size else flagged.shape[1])
    for layer in shaded:
        ax.axvspan(layer - 0.4, layer + 0.4, color="#f5d5d0", linewidth=0)
    for group, color, label in ((kept, "#7f8c8d", "kept"), (flagged, "#c0392b", "flagged")):
        if len(group):
            mean, sd = group.mean(axis=0), group.std(axis=0)
            ax.plot(layers, mean, marker="o", color=color, label=f"{label} (n={len(group)})")
            ax.fill_between(layers, mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel(f"decoder layer (shaded: {word})")
    ax.set_ylabel("normalised entropy")
    ax.set_xticks(layers)
    ax.legend(frameon=False)
    return png_bytes(fig)
