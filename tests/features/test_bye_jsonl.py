import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from auditor.verdict import analyze
from auditor.cli import cli
from auditor.config import AuditConfig
from auditor.errors import AuditInputError
from auditor.features.bye_jsonl import align, read_bye_jsonl, render_bye_jsonl
from auditor.features import FeatureSet, SampleFeatures, read_features, render_features


def _features(n=80, n_low=10, t=576, seed=0):
    """Raw entropies (nats) with a fixed image-token count T, and H / ln T as the normalised ones."""
    rng = np.random.default_rng(seed)
    h = rng.normal(5.0, 0.1, size=(n, 4))
    h[:n_low, 2] = rng.normal(2.0, 0.1, n_low)
    rows = tuple(SampleFeatures(i, f"q{i}", "ok", None, t, tuple(h[i]), tuple(h[i] / math.log(t)))
                 for i in range(n))
    return FeatureSet(rows + (SampleFeatures(n, "gone", "skipped", "record has no image"),), {"n_layers": 4})


def test_export_writes_the_reference_format_for_analysed_rows(tmp_path):
    fs = _features()
    lines = render_bye_jsonl(fs).decode().splitlines()
    assert len(lines) == 80  # the skipped row has no entropy to export
    first = json.loads(lines[0])
    assert first["question_id"] == "q0"
    assert first["entropy"] == {str(k): v for k, v in enumerate(fs.rows[0].entropy)}


@pytest.mark.parametrize("method", ["bye", "minority"])
def test_a_dump_gives_the_same_verdict_and_flags_as_the_features(tmp_path, method):
    fs = FeatureSet(_features().rows[:80], {"n_layers": 4})
    p = tmp_path / "dump.jsonl"
    p.write_bytes(render_bye_jsonl(fs))
    back = read_bye_jsonl(p)
    assert [r.id for r in back.rows] == [r.id for r in fs.rows]
    cfg = AuditConfig.of(method=method)
    a, b = analyze(fs, cfg), analyze(back, cfg)  # raw nats vs H / ln T: a constant rescaling
    assert a.verdict == b.verdict == "fail"
    assert [f.id for f in a.flagged] == [f.id for f in b.flagged] == [f"q{i}" for i in range(10)]


@pytest.mark.parametrize("line, fragment", [
    ('{"question_id": "a", "entropy": {"0": 1.0,}}', "dump.jsonl:2:"),
    ('{"question_id": "a"}', "dump.jsonl:2: expected"),
    ('{"question_id": "a", "entropy": {"0": 1.0, "2": 1.0}}', "dump.jsonl:2: entropy layers must be 0..1"),
    ('{"question_id": "a", "entropy": {"x": 1.0}}', "entropy keys must be layer numbers"),
    ('{"question_id": "a", "entropy": {"0": "1.0"}}', "entropy of layer 0 is '1.0', not a number"),
    ('{"question_id": "z", "entropy": {"0": 1.0}}', "question_id 'z' repeats line 1"),
])
def test_a_bad_line_is_named(tmp_path, line, fragment):
    p = tmp_path / "dump.jsonl"
    p.write_text('{"question_id": "z", "entropy": {"0": 1.0}}\n' + line + "\n")
    with pytest.raises(AuditInputError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        read_bye_jsonl(p)


def test_an_empty_dump_is_refused(tmp_path):
    (tmp_path / "dump.jsonl").write_text("\n")
    with pytest.raises(AuditInputError, match="no samples"):
        read_features(tmp_path / "dump.jsonl")


def test_nan_and_short_rows_are_left_out_and_counted(tmp_path):
    fs = FeatureSet(_features().rows[:80], {"n_layers": 4})
    lines = render_bye_jsonl(fs).decode().splitlines()
    lines[3] = json.dumps({"question_id": "q3", "entropy": {"0": float("nan"), "1": 1, "2": 1, "3": 1}})
    lines[5] = json.dumps({"question_id": "q5", "entropy": {"0": 1.0, "1": 1.0}})
    (tmp_path / "dump.jsonl").write_text("\n".join(lines) + "\n")
    a = analyze(read_features(tmp_path / "dump.jsonl"), AuditConfig())
    assert {u.id: u.reason for u in a.unanalysed} == {
        "q3": "non-finite entropy (NaN or inf) in stage 1", "q5": "2 layer values, expected 4"}
    assert a.n_analysed == 78 and a.n_errors == 2


def test_align_orders_by_dataset_and_skips_missing_records(tmp_path):
    fs = FeatureSet((SampleFeatures(0, "b", "ok", None, 0, (1.0,), (1.0,)),
                     SampleFeatures(1, "a", "ok", None, 0, (2.0,), (2.0,))), {"n_layers": 1})
    got = align(fs, ["a", "c", "b"], tmp_path / "dump.jsonl")
    assert [(r.index, r.id, r.status, r.entropy) for r in got.rows] == [
        (0, "a", "ok", (2.0,)), (1, "c", "skipped", ()), (2, "b", "ok", (1.0,))]
    assert got.rows[1].reason == "not in dump.jsonl"
    with pytest.raises(AuditInputError, match="1 question_id\\(s\\) are not in the dataset, e.g. 'b'"):
        align(fs, ["a"], tmp_path / "dump.jsonl")


def test_export_then_analyze_through_the_cli(synthetic_audit, tmp_path):
    ds, features, a = synthetic_audit(n=60, n_low=8)
    (tmp_path / "f.parquet").write_bytes(render_features(features))
    res = CliRunner().invoke(cli, ["export-features", str(tmp_path / "f.parquet"), "--out",
                                   str(tmp_path / "dump.jsonl")])
    assert res.exit_code == 0, res.output
    assert "60 samples" in res.output
    res = CliRunner().invoke(cli, ["analyze", str(tmp_path / "dump.jsonl"), "--data", str(ds.path),
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output  # fail
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert [f["id"] for f in analysis["flagged"]] == [f.id for f in a.flagged]
    assert analysis["inputs"]["source"]["format"] == "bye-jsonl"
    assert read_features(tmp_path / "out" / "features.parquet").meta["source"]["format"] == "bye-jsonl"
    res = CliRunner().invoke(cli, ["export-features", str(tmp_path / "f.parquet"), "--out",
                                   str(tmp_path / "f.parquet")])
    assert res.exit_code == 2 and "is the input" in res.output
