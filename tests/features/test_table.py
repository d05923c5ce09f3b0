import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.errors import AuditInputError
from auditor.features import FeatureSet, SampleFeatures, read_features, render_features


def test_parquet_round_trip_keeps_rows_and_metadata(tmp_path):
    fs = FeatureSet((SampleFeatures(0, "a", "ok", None, 16, (1.0, 2.5), (0.3, 0.9)),
                     SampleFeatures(1, "b", "skipped", "record has no image")),
                    {"n_layers": 2, "config": {"tau": 2.0}})
    p = tmp_path / "f.parquet"
    p.write_bytes(render_features(fs))
    back = read_features(p)
    assert tuple(back.rows) == tuple(fs.rows)
    assert back.rows[1] == fs.rows[1] and back.rows[-2] == fs.rows[0]
    assert back.meta["config"] == {"tau": 2.0}
    assert back.ok_rows[0].entropy_norm == (0.3, 0.9)
    assert render_features(back) == render_features(fs)  # deterministic bytes


def test_foreign_parquet_is_refused(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), p)
    with pytest.raises(AuditInputError, match="not a bye-audit features file"):
        read_features(p)
    (tmp_path / "junk.parquet").write_text("junk")
    with pytest.raises(AuditInputError, match="not a readable Parquet file"):
        read_features(tmp_path / "junk.parquet")


def test_layer_values_from_a_file_match_the_rows_and_mark_ragged_rows(tmp_path):
    rows = (SampleFeatures(0, "a", "ok", None, 4, (1.0, 2.0), (0.1, 0.2)),
            SampleFeatures(1, "b", "ok", None, 4, (1.0, 2.0, 3.0), (0.3, 0.4, 0.5)),  # a layer too many
            SampleFeatures(2, "c", "skipped", "record has no image"),
            SampleFeatures(3, "d", "ok", None, 4, (1.0, float("nan")), (0.6, float("nan"))))
    fs = FeatureSet(rows, {"n_layers": 2})
    p = tmp_path / "f.parquet"
    p.write_bytes(render_features(fs))
    back = read_features(p)
    for got in (fs, back):
        values, lengths = got.layer_values("entropy_norm", 2)
        assert lengths.tolist() == [2, 3, 0, 2]
        np.testing.assert_array_equal(values, [[0.1, 0.2], [np.nan] * 2, [np.nan] * 2, [0.6, np.nan]])
        assert got.column("id") == ["a", "b", "c", "d"]
        assert got.column("reason") == [None, None, "record has no image", None]
        assert got.n_layers == 2


def test_version_1_file_reads_with_empty_masses(tmp_path):
    table = pa.table({"index": pa.array([0], pa.int64()), "id": ["a"], "status": ["ok"], "reason": [None],
                      "n_image_tokens": pa.array([4], pa.int32()), "entropy": [[1.0, 2.0]],
                      "entropy_norm": [[0.1, 0.2]]})
    meta = {"schema_version": 1, "n_layers": 2}
    pq.write_table(table.replace_schema_metadata({b"bye_audit": json.dumps(meta)}), tmp_path / "v1.parquet")
    row = read_features(tmp_path / "v1.parquet").rows[0]
    assert row == SampleFeatures(0, "a", "ok", None, 4, (1.0, 2.0), (0.1, 0.2),
                                 answer_missing="not scored: a features file of bye-audit before schema 3")
    assert row.mass_image == () and row.entropy_heads == ()


def test_a_column_of_the_wrong_type_is_refused(tmp_path):
    table = pa.table({"index": [0], "id": ["a"], "status": ["ok"], "reason": [None], "n_image_tokens": [4],
                      "entropy": [["x"]], "entropy_norm": [[0.1]], "mass_image": [[0.1]],
                      "mass_text": [[0.1]],
                      "mass_rest": [[0.1]], "entropy_heads": [[]]})
    pq.write_table(table.replace_schema_metadata({b"bye_audit": json.dumps({"schema_version": 2})}),
                   tmp_path / "bad.parquet")
    with pytest.raises(AuditInputError, match="bad.parquet: a column has the wrong type"):
        read_features(tmp_path / "bad.parquet")


def test_provenance_is_typed_and_round_trips_the_metadata(tiny_model, tiny_data, tmp_path):
    from auditor.cli import cli
    from auditor.features.provenance import Provenance
    from click.testing import CliRunner

    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    fs = read_features(out)
    p = fs.provenance
    assert p.model.family == "llava" and p.model.n_layers == p.n_layers == fs.n_layers
    assert p.dataset.records == 60 and p.environment.backend == {"name": "torch"} and p.adapter is None
    assert not p.imported and p.environment.engine is None
    meta = {k: v for k, v in fs.meta.items()}
    assert p.to_dict(meta["schema_version"]) == meta  # what the file holds, key for key
    assert Provenance.from_dict({"n_layers": 3}).model is None  # an imported or foreign file: parts absent


def test_later_turns_round_trip_and_a_version_3_file_reads_without_them(tmp_path):
    row = SampleFeatures(0, "a", "ok", None, 4, (1.0, 2.0), (0.1, 0.2), answer_tokens=3, answer_nll=0.5,
                         base_answer_nll=2.0, later_tokens=(2, None), later_nll=(0.25, None),
                         base_later_nll=(4.0, None), later_missing="1 later answer turn beyond the context",
                         answers_truncated=1)
    p = tmp_path / "f.parquet"
    p.write_bytes(render_features(FeatureSet((row,), {"n_layers": 2})))
    assert read_features(p).rows[0] == row
    v3 = pq.read_table(p).drop_columns(["later_tokens", "later_nll", "base_later_nll", "later_missing",
                                        "answers_truncated"])
    meta = {"schema_version": 3, "n_layers": 2}
    pq.write_table(v3.replace_schema_metadata({b"bye_audit": json.dumps(meta)}), tmp_path / "v3.parquet")
    old = read_features(tmp_path / "v3.parquet").rows[0]
    assert old.answer_nll == 0.5 and old.later_nll == () and old.answers_truncated is None
