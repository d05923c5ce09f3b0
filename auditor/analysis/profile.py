"""Stage 2: sensitive-layer profiling by bimodal separation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .mixture import Mixture1D, bsi, fit_mixture, fit_rows, reference_separated


@dataclass(frozen=True)
class LayerProfile:
    layer: int
    bsi: float
    sensitive: bool
    mixture: Mixture1D

    def to_dict(self) -> dict:
        return {"layer": self.layer, "bsi": self.bsi, "sensitive": self.sensitive,
                "mixture": self.mixture.to_dict()}


def profile_layers(entropy: np.ndarray, tau: float = 2.0, rule: str = "paper", seed: int = 0,
                   fit_sample: int | None = None) -> tuple[LayerProfile, ...]:
    """Fit a 2-GMM per layer to entropies of shape (N, L), N >= 2 (on at most
    `fit_sample` rows, the same rows for every layer); a layer is sensitive
    when BSI >= tau ("paper") or when |mu1 - mu2| > 2 (s1 + s2) ("reference")."""
    cols = np.ascontiguousarray(fit_rows(entropy, fit_sample, seed).T)  # (L, n)

    def profile(layer: int) -> LayerProfile:
        mix, _ = fit_mixture(cols[layer], seed)
        b = bsi(mix)
        sensitive = b >= tau if rule == "paper" else reference_separated(mix)
        return LayerProfile(layer, b, bool(sensitive), mix)

    # The fits are independent and spend their time in numpy, which releases
    # the GIL: two threads take about 0.6x the time, with the same results.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return tuple(pool.map(profile, range(entropy.shape[1])))
