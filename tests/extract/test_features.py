import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.errors import AuditInputError
from auditor.extract.features import FeatureSet, SampleFeatures, read_features, render_features


def test_parquet_round_trip_keeps_rows_and_metadata(tmp_path):
    fs = FeatureSet((SampleFeatures(0, "a", "ok", None, 16, (1.0, 2.5), (0.3, 0.9)),
                     SampleFeatures(1, "b", "skipped", "record has no image")),
                    {"n_layers": 2, "config": {"tau": 2.0}})
    p = tmp_path / "f.parquet"
    p.write_bytes(render_features(fs))
    back = read_features(p)
    assert back.rows == fs.rows
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
