import numpy as np
import pytest

from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.errors import AuditInputError
from auditor.evaluate import evaluate_outputs
from auditor.features import FeatureSet, SampleFeatures, render_features
from auditor.fileio import json_bytes


@pytest.fixture
def out_dir(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(100, 3))
    m[:10, 1] = rng.normal(0.3, 0.02, 10)
    fs = FeatureSet(tuple(SampleFeatures(i, f"s{i}", "ok", None, 16, tuple(r), tuple(r))
                          for i, r in enumerate(m)), {"n_layers": 3})
    (tmp_path / "features.parquet").write_bytes(render_features(fs))
    (tmp_path / "analysis.json").write_bytes(json_bytes(analyze(fs, AuditConfig.of(method="bye")).to_dict()))
    return tmp_path


def test_metrics_and_score_auroc(out_dir):
    truth = out_dir / "truth.txt"
    truth.write_text("# poisoned\n" + "\n".join(f"s{i}" for i in range(10)) + "\n")
    m = evaluate_outputs(out_dir, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (10, 0, 0, 90)
    assert m["f1"] == 1.0 and m["auroc"] == 1.0
    assert m["layer_auroc"][1]["auroc_low_is_poison"] == 1.0


def test_truth_naming_unknown_ids_is_refused(out_dir):
    truth = out_dir / "truth.txt"
    truth.write_text("nope\n")
    with pytest.raises(AuditInputError, match="1 id\\(s\\) are not in the audited dataset"):
        evaluate_outputs(out_dir, truth)
    with pytest.raises(AuditInputError, match="not found"):
        evaluate_outputs(out_dir / "missing", truth)
