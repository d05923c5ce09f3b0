import json
import shutil

import pytest

from auditor.errors import AuditInputError
from auditor.models import load_model
from auditor.models.loading import read_model_type


def test_loads_the_tiny_checkpoint(tiny_model):
    loaded = load_model(tiny_model)
    assert loaded.model_type == "llava" and loaded.n_layers == 8
    assert not loaded.model.training


def test_folder_without_safetensors_is_refused(tiny_model, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(tiny_model, bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    with pytest.raises(AuditInputError, match=r"no \.safetensors weights.*pytorch_model\.bin.*pickle"):
        read_model_type(bad)


def test_unsupported_model_type_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(AuditInputError, match="unsupported model_type .bert.; supported: llava, qwen2_vl"):
        read_model_type(tmp_path)


def test_missing_folder_and_config(tmp_path):
    with pytest.raises(AuditInputError, match="model folder not found"):
        read_model_type(tmp_path / "nope")
    with pytest.raises(AuditInputError, match="no config.json"):
        read_model_type(tmp_path)


def test_damaged_weights_are_an_input_error(tiny_model, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(tiny_model, bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(AuditInputError, match="cannot load the checkpoint"):
        load_model(bad)


def test_a_qwen2_vl_checkpoint_audits_end_to_end(tiny_data, tmp_path):
    """model_type picks the family; stage 1 sees 16 merged image tokens in each of 6 layers."""
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from auditor.cli import cli
    from tinyworld.qwen2vl import TinyQwen2VLSpec, write_tiny_qwen2vl

    model = write_tiny_qwen2vl(tmp_path / "qwen")
    assert read_model_type(model) == "qwen2_vl"
    res = CliRunner().invoke(cli, ["audit", "--model", str(model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "out"), "--no-progress", "--batch-size", "4"])
    assert res.exit_code in (0, 1, 3), res.output
    table = pq.read_table(tmp_path / "out" / "features.parquet").to_pylist()
    assert all(r["status"] == "ok" for r in table)
    assert {r["n_image_tokens"] for r in table} == {TinyQwen2VLSpec().image_tokens}
    assert {len(r["entropy_norm"]) for r in table} == {TinyQwen2VLSpec().text_layers}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"]["model"]["model_type"] == "qwen2_vl"
