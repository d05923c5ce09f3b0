from pathlib import Path

import numpy as np

from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.data import read_dataset
from auditor.features import read_features
from benchmarks.analyze_scale import write_inputs


def test_synthetic_inputs_are_a_valid_audit_with_a_five_percent_group(tmp_path):
    features_path, data_path = write_inputs(tmp_path, 2000, 6)
    fs, ds = read_features(features_path), read_dataset(data_path)
    assert fs.column("id") == [s.id for s in ds.samples] and all(s.ok for s in ds.samples)
    values, lengths = fs.layer_values("entropy_norm", 6)
    assert (lengths == 6).all() and np.isfinite(values).all()
    group = values[:, 3] == 0.95  # the compact group sits at 0.95 in layers L/2 .. L/2 + 2
    assert 0.03 < group.mean() < 0.07
    a = analyze(fs, AuditConfig())
    flagged = {f.index for f in a.flagged}
    assert a.verdict == "fail" and flagged == set(np.flatnonzero(group).tolist())


def test_repeats_alternate_with_a_baseline_tree_and_report_medians_and_their_ratio(capsys, monkeypatch):
    from benchmarks import analyze_scale

    root = Path(analyze_scale.__file__).resolve().parents[1]  # this tree as its own baseline
    monkeypatch.setattr("sys.argv", ["analyze_scale", "--samples", "3000", "--layers", "6", "--repeats", "2",
                                     "--baseline-tree", str(root)])
    assert analyze_scale.main() == 0
    lines = capsys.readouterr().out.splitlines()
    runs = [line.split(" run ")[0] for line in lines if " run " in line and "exit 1: verdict: FAIL" in line]
    assert runs == ["baseline", "this", "baseline", "this"]  # alternating; the planted group fails every run
    medians = [line for line in lines if ": median " in line]
    assert len(medians) == 2 and all("of 2 run(s)" in line and "peak RSS" in line for line in medians)
    assert any(line.startswith("this / baseline (medians): ") for line in lines)
