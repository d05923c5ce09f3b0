"""pipeline: the report's heatmaps average over the layers their caption names."""

import dataclasses
from types import SimpleNamespace

import numpy as np

from auditor import pipeline
from auditor.config import AuditConfig
from auditor.extract import runner
from auditor.report.html import render_html


def test_the_heatmaps_average_over_the_evidence_layers_their_caption_names(synthetic_audit, monkeypatch):
    """The heatmaps average over the detector's evidence layers, which their caption
    names (not BYE's sensitive layers)."""
    ds, features, a = synthetic_audit(n=60, n_low=8, config=AuditConfig.of(method="minority"))
    layers = tuple(dataclasses.replace(p, sensitive=p.layer == 0) for p in a.layers)
    a = dataclasses.replace(a, layers=layers, evidence_layers=(2,))
    assert a.sensitive_layers == (0,)
    rows = np.zeros((3, 1, 4))
    rows[0, 0, 0] = 1.0  # the sensitive layer looks at token 0
    rows[2, 0, 3] = 1.0  # the evidence layer at token 3
    monkeypatch.setattr(runner, "load_image", lambda sample: None)
    monkeypatch.setattr(runner, "sample_rows",
                        lambda loaded, images, prompts: [SimpleNamespace(image_rows=rows)])
    monkeypatch.setattr(pipeline, "heatmap_pngs", lambda image, grid: (grid.tobytes(), b""))
    maps = pipeline.attention_heatmaps(SimpleNamespace(n_layers=3), ds, a)
    grid = np.frombuffer(next(iter(maps.values()))[0]).reshape(2, 2)
    np.testing.assert_allclose(grid, [[0.0, 0.0], [0.0, 1.0]])  # token 3: layer 2's, not layer 0's
    html = render_html(a, features.meta, ds, heatmaps=maps, features=features).decode()
    assert "averaged over heads and over layers 2." in html
