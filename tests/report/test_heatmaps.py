import numpy as np
from PIL import Image

from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.features import FeatureSet, SampleFeatures
from auditor.report.heatmaps import attention_grid, heatmap_pngs, samples_to_show


def test_grid_averages_layers_and_heads_and_renormalises():
    rows = np.zeros((3, 2, 4))
    rows[0, :, 0] = 0.4  # layer 0 looks at token 0
    rows[2, :, 3] = 0.1  # layer 2 at token 3 (with less mass: renormalised anyway)
    g = attention_grid(rows, [0, 2])
    assert g.shape == (2, 2)
    np.testing.assert_allclose(g, [[0.8, 0.0], [0.0, 0.2]])
    assert attention_grid(np.ones((1, 1, 6)), [0]) is None  # 6 tokens: no square grid


def test_samples_shown_are_the_most_suspicious_flagged_then_kept_across_scores():
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(100, 2))
    m[:10, 1] = rng.normal(0.3, 0.02, 10)
    fs = FeatureSet(tuple(SampleFeatures(i, f"s{i}", "ok", None, 16, tuple(r), tuple(r))
                          for i, r in enumerate(m)), {"n_layers": 2})
    a = analyze(fs, AuditConfig())
    shown = samples_to_show(a, n_flagged=3, n_kept=4)
    by_suspicion = [f.index for f in sorted(a.flagged, key=lambda f: f.score)]
    assert shown[:3] == by_suspicion[:3] and by_suspicion[:3] != [0, 1, 2]  # not record order
    kept = shown[3:]
    assert len(kept) == 4 and not set(kept) & set(range(10))
    scores = {f.index: f.score for f in a.scored}
    kept_scores = sorted(s for i, s in scores.items() if i >= 10)
    assert scores[kept[0]] == kept_scores[0] and scores[kept[-1]] == kept_scores[-1]


def test_heatmap_pngs_are_pngs():
    thumb, heat = heatmap_pngs(Image.new("RGB", (64, 64), (200, 10, 10)), np.eye(8) / 8)
    assert thumb.startswith(b"\x89PNG") and heat.startswith(b"\x89PNG")
    assert heatmap_pngs(Image.new("RGB", (64, 64)), np.eye(8) / 8)[1] == heatmap_pngs(
        Image.new("RGB", (64, 64)), np.eye(8) / 8)[1]  # deterministic
