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


def score_histogram(scores: np.ndarray, flagged: np.ndarray, threshold: float) -> bytes:
    """Histogram of per-sample scores, flagged vs kept, with the decision boundary."""
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    bins = np.histogram_bin_edges(scores, bins=40)
    ax.hist(scores[~flagged], bins=bins, color="#7f8c8d", label="kept")
    ax.hist(scores[flagged], bins=bins, color="#c0392b", label="flagged")
    ax.axvline(threshold, color="#2c3e50", linestyle="--", linewidth=1, label="boundary")
    ax.set_xlabel("mean normalised entropy over sensitive layers")
    ax.set_ylabel("samples")
    ax.legend(frameon=False)
    return png_bytes(fig)
