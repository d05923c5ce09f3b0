"""--base: a full fine-tune's answers scored under the model it started from."""

import numpy as np
from click.testing import CliRunner

from auditor.cli import cli
from auditor.features import read_features
from tinyworld.qwen2vl import write_tiny_qwen2vl


def _extract(tmp_path, *args):
    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(cli, ["extract", *args, "--out", str(out), "--no-progress"])
    return res, out


def test_the_base_scores_the_answers_and_is_recorded(tiny_model, tiny_data, adapter_and_merged, tmp_path):
    _, merged = adapter_and_merged
    res, out = _extract(tmp_path, "--model", str(merged), "--base", str(tiny_model),
                        "--data", str(tiny_data[0]))
    assert res.exit_code == 0, res.output
    fs = read_features(out)
    rows = [r for r in fs.rows if r.status == "ok"]
    assert all(r.base_answer_nll is not None and r.answer_nll is not None for r in rows)
    gain = np.array([r.answer_gain for r in rows])
    assert np.isfinite(gain).all() and np.abs(gain).max() > 1e-3  # the fine-tune moved the answers
    assert fs.meta["base"]["how"] == "model" and fs.meta["base"]["path"] == str(tiny_model)
    # the same model as its own base: no gain at all
    res, out = _extract(tmp_path, "--model", str(tiny_model), "--base", str(tiny_model),
                        "--data", str(tiny_data[0]))
    assert res.exit_code == 0, res.output
    assert max(abs(r.answer_gain) for r in read_features(out).rows if r.status == "ok") < 1e-6


def test_a_base_of_another_family_is_an_input_error(tiny_model, tiny_data, tmp_path):
    other = write_tiny_qwen2vl(tmp_path / "qwen")
    res, _ = _extract(tmp_path, "--model", str(tiny_model), "--base", str(other), "--data", str(tiny_data[0]))
    assert res.exit_code == 2
    assert f"--base {other}: a qwen2_vl model, but {tiny_model} is llava" in res.output


def test_base_with_an_adapter_or_without_answers_is_refused(tiny_model, tiny_data, adapter_and_merged,
                                                             tmp_path):
    adapter, _ = adapter_and_merged
    res, _ = _extract(tmp_path, "--model", str(tiny_model), "--adapter", str(adapter), "--base",
                      str(tiny_model), "--data", str(tiny_data[0]))
    assert res.exit_code == 2 and "with --adapter the base is the model the adapter applies to" in res.output
    res, _ = _extract(tmp_path, "--model", str(tiny_model), "--base", str(tiny_model), "--no-answers",
                      "--data", str(tiny_data[0]))
    assert res.exit_code == 2 and "the base scores the answers" in res.output
    res, _ = _extract(tmp_path, "--model", str(tiny_model), "--base", str(tmp_path / "nope"),
                      "--data", str(tiny_data[0]))
    assert res.exit_code == 2 and "--base" in res.output and "not found" in res.output
