"""--adapter: a PEFT LoRA adapter over --model audits exactly like the merged model."""

import json

import numpy as np
from click.testing import CliRunner

from auditor.cli import cli
from auditor.features import read_features


def _extract(tmp_path, name, *args, data):
    out = tmp_path / f"{name}.parquet"
    res = CliRunner().invoke(cli, ["extract", *args, "--data", str(data), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    return read_features(out)


def test_audit_with_adapter_equals_audit_of_merged_model(tiny_model, tiny_data, adapter_and_merged, tmp_path):
    adapter, merged = adapter_and_merged
    data = tiny_data[0]
    with_adapter = _extract(tmp_path, "a", "--model", str(tiny_model), "--adapter", str(adapter), data=data)
    of_merged = _extract(tmp_path, "m", "--model", str(merged), data=data)
    of_base = _extract(tmp_path, "b", "--model", str(tiny_model), data=data)
    a = np.array([r.entropy for r in with_adapter.rows])
    to_merged = np.abs(a - np.array([r.entropy for r in of_merged.rows])).max()
    to_base = np.abs(a - np.array([r.entropy for r in of_base.rows])).max()
    assert to_merged <= 1e-6
    # the untrained tiny model attends almost uniformly, so differences are small,
    # but the adapter's are far above float noise: it was really applied
    assert to_base > 1e-5 and to_base > 100 * max(to_merged, 1e-9)
    assert with_adapter.meta["adapter"]["path"] == str(adapter)
    assert len(with_adapter.meta["adapter"]["sha256_tree"]) == 64
    # The answers are scored under the fine-tune and, with the adapter
    # disabled, under the base: as the merged model and the base score them.
    nll = np.array([r.answer_nll for r in with_adapter.rows])
    np.testing.assert_allclose(nll, [r.answer_nll for r in of_merged.rows], atol=1e-5)
    np.testing.assert_allclose([r.base_answer_nll for r in with_adapter.rows],
                               [r.answer_nll for r in of_base.rows], atol=1e-5)
    assert np.abs(nll - np.array([r.answer_nll for r in of_base.rows])).max() > 1e-3  # the adapter learned
    assert all(r.base_answer_nll is None for r in of_merged.rows)  # no base known: no base pass
    assert with_adapter.meta["base"] == {"how": "adapter disabled", "path": str(tiny_model),
                                         "sha256_tree": with_adapter.meta["model"]["sha256_tree"]}
    assert with_adapter.meta["adapter"]["merged"] is False


def test_pickle_adapter_is_refused(tiny_model, tiny_data, adapter_and_merged, tmp_path):
    adapter, _ = adapter_and_merged
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    (bad / "adapter_model.bin").write_bytes(b"not really")
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--adapter", str(bad),
                                   "--data", str(tiny_data[0]), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert [ln for ln in res.output.strip().splitlines() if not ln.startswith("bye-audit: [")] == [
        f"error: {bad}: no adapter_model.safetensors (adapter_model.bin is pickle-based and refused); save "
        "the adapter with safe_serialization=True"]


def test_adapter_for_another_model_is_an_input_error(tiny_model, tiny_data, adapter_and_merged, tmp_path):
    adapter, _ = adapter_and_merged
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_model.safetensors").write_bytes((adapter / "adapter_model.safetensors").read_bytes())
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["r"] = cfg["r"] * 2  # shapes no longer match the weights
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--adapter", str(other),
                                   "--data", str(tiny_data[0]), "--out", str(tmp_path / "f.parquet")])
    assert res.exit_code == 2 and "cannot apply the adapter" in res.output
    assert "Traceback" not in res.output


def test_an_adapter_missing_tensors_is_refused_not_applied_as_a_no_op(tiny_model, tiny_data,
                                                                      adapter_and_merged,
                                                                       tmp_path):
    """PEFT only warns about missing LoRA tensors and leaves them at their
    initial values (B = 0: the adapter does nothing), so the audit would judge
    the base model; extra tensors it silently ignores."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    adapter, _ = adapter_and_merged
    for damage in ("missing", "extra"):
        bad = tmp_path / damage
        shutil.copytree(adapter, bad)
        weights = load_file(bad / "adapter_model.safetensors")
        if damage == "missing":
            weights = {k: v for k, v in weights.items() if "lora_B" not in k}
        else:
            weights["base_model.model.backdoor.lora_A.weight"] = torch.zeros(2, 2)
        save_file(weights, bad / "adapter_model.safetensors")
        res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--adapter", str(bad),
                                       "--data", str(tiny_data[0]), "--out",
                                       str(tmp_path / f"{damage}.parquet")])
        assert res.exit_code == 2, res.output
        expected = "adapter tensors missing: " if damage == "missing" else "1 tensors its adapter_config.json"
        assert "cannot apply the adapter" in res.output and expected in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_the_adapters_base_model_name_is_never_looked_up(tiny_model, tiny_data, adapter_and_merged, tmp_path,
                                                          monkeypatch):
    """adapter_config.json's base_model_name_or_path is the submitter's string:
    checking the adapter's tensors must not resolve it (PEFT's "auto" embedding
    check would ask the Hub, or read a config from that path)."""
    import shutil

    import peft.utils.save_and_load as peft_save

    asked = []
    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", lambda *a, **k: asked.append(a) or None)
    adapter, _ = adapter_and_merged
    shifted = tmp_path / "adapter"
    shutil.copytree(adapter, shifted)
    config = json.loads((shifted / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/elsewhere"
    (shifted / "adapter_config.json").write_text(json.dumps(config))
    got = _extract(tmp_path, "shifted", "--model", str(tiny_model), "--adapter", str(shifted),
                   data=tiny_data[0])
    assert asked == []
    assert got.rows and all(r.status == "ok" for r in got.rows)
