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
    with pytest.raises(AuditInputError,
                       match="unsupported model_type .bert.; supported: idefics3, internvl, llava, "
                       "llava_next, paligemma, qwen2_5_vl, qwen2_vl"):
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
    with pytest.raises(AuditInputError, match="model.safetensors: not a valid safetensors file"):
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


def _pickle_checkpoint(tiny_model, folder):
    """The tiny checkpoint with its weights as a torch pickle instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny_model, folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_need_allow_pickle_and_then_give_the_same_model(tiny_model, tmp_path):
    import torch

    m = _pickle_checkpoint(tiny_model, tmp_path / "m")
    with pytest.raises(AuditInputError, match="--allow-pickle"):
        load_model(m)
    a, b = load_model(m, allow_pickle=True).model, load_model(tiny_model).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch BOOM_PICKLE_RAN",))


def test_a_malicious_pickle_is_not_executed_even_with_allow_pickle(tiny_model, tmp_path, monkeypatch):
    import pickle

    m = _pickle_checkpoint(tiny_model, tmp_path / "m")
    (m / "pytorch_model.bin").write_bytes(pickle.dumps({"x": _Boom()}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AuditInputError, match="cannot load the checkpoint"):
        load_model(m, allow_pickle=True)
    assert not (tmp_path / "BOOM_PICKLE_RAN").exists()


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json", "code.py"])
def test_a_checkpoint_asking_for_remote_code_is_refused(tiny_model, tmp_path, where):
    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    if where.endswith(".py"):
        (m / where).write_text("import os\n")
    else:
        data = json.loads((m / where).read_text())
        data["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
        (m / where).write_text(json.dumps(data))
    with pytest.raises(AuditInputError, match="never runs code"):
        read_model_type(m)


def test_a_qwen2_5_vl_checkpoint_loads_with_its_family(tmp_path):
    from tinyworld.qwen2vl import write_tiny_qwen2vl

    loaded = load_model(write_tiny_qwen2vl(tmp_path / "q25", version="2.5"))
    assert loaded.model_type == "qwen2_5_vl" and loaded.family.name == "qwen2_5_vl"
    assert type(loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"


# A checkpoint that does not fill its model is refused, never completed at random

def _copy(tiny_model, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    return m


@pytest.mark.parametrize("damage", ["empty", "half", "extra", "wider"])
def test_missing_unexpected_or_misshapen_tensors_are_refused_by_name(tiny_model, tmp_path, damage):
    """An empty or half-filled model.safetensors is refused, not loaded with random
    weights (a 60-record slice of the example would then pass where its real
    weights fail)."""
    import struct

    import torch
    from safetensors.torch import load_file, save_file

    m = _copy(tiny_model, tmp_path)
    weights = load_file(m / "model.safetensors")
    names = sorted(weights)
    if damage == "empty":
        (m / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
        match = r"config\.json: text_config\.num_hidden_layers = 8, but the weights hold only 0 tensors"
    elif damage == "half":
        save_file({k: weights[k] for k in names[: len(names) // 2]}, m / "model.safetensors")
        match = rf"{len(names) - len(names) // 2} weights missing from the checkpoint: \S+weight, "
    elif damage == "extra":
        save_file({**weights, "backdoor.weight": torch.zeros(2)}, m / "model.safetensors")
        match = r"1 tensors the model does not have: backdoor\.weight"
    else:
        cfg = json.loads((m / "config.json").read_text())
        # smaller: no size check can stop it, the loading check must
        cfg["text_config"]["intermediate_size"] -= 1
        (m / "config.json").write_text(json.dumps(cfg))
        match = (r"tensors of the wrong shape: model\.language_model\.layers\.0\.mlp\.down_proj\.weight "
                 r"\(checkpoint")
    with pytest.raises(AuditInputError, match=match) as err:
        load_model(m)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key, value, match", [
    ("num_hidden_layers", 10 ** 6, r"text_config\.num_hidden_layers = 1000000, but the weights hold only"),
    ("hidden_size", 10 ** 6, r"describes a model of [\d,]+ parameters, but the weights hold [\d,]+ values")])
def test_a_config_larger_than_its_tensors_is_refused_before_allocating(tiny_model, tmp_path, key, value,
                                                                       match):
    """Absurd config sizes are refused before allocation: num_hidden_layers = 10^6
    would allocate 4 GB before failing; a huge hidden_size would end in
    "look at the above report!" with nothing above."""
    import resource

    m = _copy(tiny_model, tmp_path)
    cfg = json.loads((m / "config.json").read_text())
    cfg["text_config"][key] = value
    (m / "config.json").write_text(json.dumps(cfg))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AuditInputError, match=match):
        load_model(m)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: nothing allocated


def test_a_malicious_pickle_error_never_advises_a_full_unpickle(tiny_model, tmp_path, capfd):
    import pickle

    m = _pickle_checkpoint(tiny_model, tmp_path / "m")
    (m / "pytorch_model.bin").write_bytes(pickle.dumps({"x": _Boom()}))
    with pytest.raises(AuditInputError) as err:
        load_model(m, allow_pickle=True)
    assert "weights_only" not in str(err.value) and "never unpickles arbitrary objects" in str(err.value)
    assert "Warning" not in capfd.readouterr().err  # torch's pickle-protocol notice is not shown


def test_a_missing_tokenizer_is_named(tiny_model, tmp_path):
    m = _copy(tiny_model, tmp_path)
    (m / "tokenizer.json").unlink()
    with pytest.raises(AuditInputError, match=r"cannot load the checkpoint: no usable tokenizer"):
        load_model(m)


def test_weights_larger_than_the_free_memory_are_refused_before_loading(tiny_model, monkeypatch):
    from auditor.models import loading

    seen = []
    monkeypatch.setattr(loading, "available_memory", lambda device: seen.append(device) or 1000)
    with pytest.raises(AuditInputError,
                       match=r"the weights need 0\.\d GiB in float32, but cpu has 0\.0 GiB free; "
                                              r"free memory, use a larger machine or --dtype bfloat16"):
        loading.load_model(tiny_model)
    assert seen == ["cpu"]
    monkeypatch.setattr(loading, "available_memory", lambda device: 10 ** 12)
    assert loading.load_model(tiny_model, dtype="bfloat16").n_layers > 0
