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
    with pytest.raises(AuditInputError, match="unsupported model_type 'bert'; supported: llava"):
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
