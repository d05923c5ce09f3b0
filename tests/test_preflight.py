import pytest

from auditor.errors import AuditInputError
from auditor.preflight import ERROR_LOG, PARTS, check_out_folder


def test_an_empty_or_new_folder_or_an_interrupted_audit_is_accepted(tmp_path):
    check_out_folder(tmp_path / "new", overwrite=False)
    check_out_folder(tmp_path, overwrite=False)
    (tmp_path / PARTS).mkdir()
    (tmp_path / ERROR_LOG).write_text("traceback")
    check_out_folder(tmp_path, overwrite=False)  # a rerun resumes from the shards


def test_a_previous_bundle_needs_overwrite_and_other_files_are_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(AuditInputError, match="earlier audit; pass --overwrite"):
        check_out_folder(tmp_path, overwrite=False)
    check_out_folder(tmp_path, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(AuditInputError, match="not empty .* 'thesis.tex'"):
            check_out_folder(other, overwrite=overwrite)
    with pytest.raises(AuditInputError, match="would overwrite an input"):
        check_out_folder(other, overwrite=True, inputs={str((other / "thesis.tex").resolve())})
    with pytest.raises(AuditInputError, match="not a folder"):
        check_out_folder(other / "thesis.tex", overwrite=True)


def test_analyze_may_write_its_bundle_beside_the_features_it_reads(tmp_path):
    features = tmp_path / "features.parquet"
    features.write_bytes(b"PAR1")
    check_out_folder(tmp_path, overwrite=False, reads={str(features.resolve())})
    with pytest.raises(AuditInputError, match="not empty"):
        check_out_folder(tmp_path, overwrite=False)
