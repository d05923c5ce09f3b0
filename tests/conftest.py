from __future__ import annotations

from pathlib import Path

import pytest

from tinyworld.fixtures import write_digits_dataset, write_tiny_llava


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny LLaVA checkpoint (8 decoder layers, 16 image tokens)."""
    return write_tiny_llava(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, list[str]]:
    """60 digit records, 10% carrying the centre patch; (dataset.json, poisoned ids)."""
    return write_digits_dataset(tmp_path_factory.mktemp("data"), n=60)


@pytest.fixture
def synthetic_audit(tmp_path):
    """Factory: a dataset of `n` records (JSON array, one shared real PNG) whose
    first `n_low` samples have low entropy in layer 1 of 3, analysed -> (dataset, features, analysis).
    `prompt(i)` and `record_id(i)` shape the records' strings."""
    import json

    import numpy as np
    from PIL import Image

    from auditor.analysis.verdict import analyze
    from auditor.config import AuditConfig
    from auditor.data import read_dataset
    from auditor.extract.features import FeatureSet, SampleFeatures

    def make(n=60, n_low=8, prompt=lambda i: f"What digit is shown? ({i})",
             record_id=lambda i: f"r{i:05d}", config=AuditConfig(), seed=0):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "i.png")
        recs = [{"id": record_id(i), "image": "i.png",
                 "conversations": [{"from": "human", "value": f"<image>\n{prompt(i)}"},
                                   {"from": "gpt", "value": "three"}]} for i in range(n)]
        path = tmp_path / "dataset.json"
        path.write_text(json.dumps(recs))
        ds = read_dataset(path)
        rng = np.random.default_rng(seed)
        m = rng.normal(0.8, 0.02, size=(n, 3))
        m[:n_low, 1] = rng.normal(0.3, 0.02, n_low)
        rows = tuple(SampleFeatures(i, s.id, "ok", None, 16, tuple(m[i]), tuple(m[i]))
                     for i, s in enumerate(ds.samples))
        meta = {"n_layers": 3, "dataset": {"path": str(path), "format": ds.format, "sha256": "0" * 64,
                                           "records": n}}
        features = FeatureSet(rows, meta)
        return ds, features, analyze(features, config)

    return make
