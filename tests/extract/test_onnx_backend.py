"""--backend onnx: the exported graph gives the torch backend's features (1e-4),
and refuses what it does not belong to, with one clear line."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from auditor.analysis.entropy import image_attention_entropy
from auditor.cli import cli
from auditor.config import Stage1Config
from auditor.errors import AuditInputError
from auditor.extract import onnx_backend
from auditor.models.capture import CAPTURE_ATTENTION
from auditor.features import read_features
from auditor.extract.onnx_backend import load_onnx
from auditor.extract.runner import sample_rows
from auditor.models import load_model
from tinyworld.digits import QUESTIONS, load_digit_arrays, render_digit

SHORT = ["Digit?", "What digit?", "Which digit?"]
LONG = [q + " Answer with one word, the name of the digit, and nothing else at all." for q in QUESTIONS]


def _images(n, sizes):
    x, _ = load_digit_arrays()
    rng = np.random.default_rng(n)
    return [render_digit(x[i], rng, size=32).resize(sizes[i % len(sizes)]) for i in range(n)]


def _assert_same(torch_model, onnx_model, images, prompts):
    a = sample_rows(torch_model, images, prompts)
    b = sample_rows(onnx_model, images, prompts)
    assert len(a) == len(b) == len(images)
    for ca, cb in zip(a, b):
        assert ca.image_rows.shape == cb.image_rows.shape
        np.testing.assert_allclose(cb.image_rows, ca.image_rows, atol=1e-4)
        np.testing.assert_allclose(cb.mass, ca.mass, atol=1e-4)
        np.testing.assert_allclose(image_attention_entropy(cb.image_rows, 1e-8),
                                   image_attention_entropy(ca.image_rows, 1e-8), atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("prompts", [SHORT, LONG], ids=["short", "long"])
def test_llava_graph_matches_torch(tiny_model, onnx_llava, batch, prompts):
    torch_model = load_model(tiny_model, capture_attention=CAPTURE_ATTENTION)
    onnx_model = load_onnx(onnx_llava, tiny_model, Stage1Config(backend="onnx"))
    # mixed prompt lengths: padding in every batch but the first
    texts = [prompts[i % len(prompts)] + " ." * (i % 3) for i in range(batch)]
    _assert_same(torch_model, onnx_model, _images(batch, [(32, 32)]), texts)


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("prompts", [SHORT, LONG], ids=["short", "long"])
def test_qwen2vl_graph_matches_torch_across_image_sizes(tiny_qwen2vl_any_size, onnx_qwen2vl, batch, prompts):
    torch_model = load_model(tiny_qwen2vl_any_size, capture_attention=CAPTURE_ATTENTION)
    onnx_model = load_onnx(onnx_qwen2vl, tiny_qwen2vl_any_size, Stage1Config(backend="onnx"))
    # two patch grids in one batch: the backend runs each grid's samples together
    images = _images(batch, [(64, 64), (96, 64)])
    assert len({im.size for im in images}) == min(batch, 2)
    _assert_same(torch_model, onnx_model, images, [prompts[i % len(prompts)] for i in range(batch)])


def test_extract_cli_onnx_writes_the_torch_features_and_records_the_provider(tiny_model, onnx_llava,
                                                                             tiny_data,
                                                                          tmp_path):
    data = tiny_data[0]
    outs = {}
    for name, extra in (("torch", []), ("onnx", ["--backend", "onnx", "--onnx", str(onnx_llava)])):
        out = tmp_path / f"{name}.parquet"
        res = CliRunner().invoke(cli,
                                 ["extract", "--model", str(tiny_model), "--data", str(data), "--out",
                                  str(out),
                                       "--no-progress", "--batch-size", "4", *extra])
        assert res.exit_code == 0, res.output
        outs[name] = read_features(out)
    a, b = outs["torch"], outs["onnx"]
    assert [r.id for r in a.rows] == [r.id for r in b.rows]
    np.testing.assert_allclose(np.array([r.entropy for r in b.ok_rows]),
                               np.array([r.entropy for r in a.ok_rows]),
                               atol=1e-4)
    backend = b.meta["environment"]["backend"]
    assert backend["name"] == "onnx" and backend["provider"] == "CPUExecutionProvider"
    # the graph outputs the attention rows only: the answers are not scored, and the rows say why
    assert all(r.answer_nll is None and r.answer_missing == "not scored: the ONNX graph outputs attention "
               "rows only" for r in b.ok_rows)
    assert all(r.answer_nll is not None for r in a.ok_rows)
    assert a.meta["environment"]["backend"] == {"name": "torch"}


def test_audit_onnx_lists_the_graph_in_the_manifest_and_verify_checks_it(tiny_model, onnx_llava, tiny_data,
                                                                          tmp_path):
    graph = tmp_path / "g" / "graph.onnx"
    graph.parent.mkdir()
    shutil.copy(onnx_llava, graph)
    keys = tmp_path / "keys"
    assert CliRunner().invoke(cli, ["keygen", "--out", str(keys)]).exit_code == 0
    out = tmp_path / "out"
    res = CliRunner().invoke(cli,
                             ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out",
                              str(out),
                                   "--no-progress", "--backend", "onnx", "--onnx", str(graph),
                                   "--sign-key", str(keys / "bye-audit.key")])
    assert res.exit_code in (0, 1, 3), res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert "onnx/graph.onnx" in manifest["files"]
    verify = ["verify", str(out), "--key", str(keys / "bye-audit.pub")]
    assert CliRunner().invoke(cli, verify).exit_code == 0
    graph.write_bytes(graph.read_bytes() + b"\0")
    res = CliRunner().invoke(cli, verify)
    assert res.exit_code == 1 and "onnx/graph.onnx" in res.output


def _error(tiny_model, graph, data, *extra, model=None):
    res = CliRunner().invoke(cli, ["extract", "--model", str(model or tiny_model), "--data", str(data),
                                   "--out", "/tmp/never-written.parquet", "--no-progress", "--backend",
                                   "onnx",
                                   *(["--onnx", str(graph)] if graph else []), *extra])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "Traceback" not in res.output
    return line


def test_graph_refuses_another_models_processor(tiny_model, onnx_llava, tiny_data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    cfg = json.loads((other / "processor_config.json").read_text())
    cfg["image_processor"]["image_mean"] = [0.5, 0.5, 0.5]
    (other / "processor_config.json").write_text(json.dumps(cfg))
    line = _error(tiny_model, onnx_llava, tiny_data[0], model=other)
    assert "config or processor files differ" in line and str(other) in line


def test_graph_refuses_other_weights_and_another_family(tiny_model, onnx_llava, onnx_qwen2vl, tiny_data,
                                                        tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)
    weights = other / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    assert "other weights" in _error(tiny_model, onnx_llava, tiny_data[0], model=other)
    assert "qwen2_vl model" in _error(tiny_model, onnx_qwen2vl, tiny_data[0])


def test_bad_graph_files_and_options_are_one_line_errors(tiny_model, tiny_data, tmp_path):
    data = tiny_data[0]
    assert "needs --onnx" in _error(tiny_model, None, data)
    (tmp_path / "g.onnx").write_bytes(b"unread: the options are refused first")
    assert "runs in float32" in _error(tiny_model, tmp_path / "g.onnx", data, "--dtype", "bfloat16")
    assert "--provider" in _error(tiny_model, tmp_path / "g.onnx", data, "--device", "cuda")
    assert "ONNX graph not found" in _error(tiny_model, tmp_path / "missing.onnx", data)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    assert "junk.onnx" in _error(tiny_model, junk, data)
    import onnx
    from onnx import TensorProto, helper

    foreign = tmp_path / "foreign.onnx"
    node = helper.make_node("Identity", ["x"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g",
                                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 [1])],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                 [1])])), foreign)
    assert "not a bye-audit graph" in _error(tiny_model, foreign, data)
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(data), "--out",
                                   str(tmp_path / "f.parquet"), "--onnx", str(foreign)])
    assert res.exit_code == 2 and "only used with --backend onnx" in res.output


def test_onnx_options_without_backend_onnx_are_refused(tiny_model, tiny_data, tmp_path):
    for extra in (["--provider", "cuda"], ["--allow-fallback"], ["--threads", "2"]):
        res = CliRunner().invoke(cli,
                                 ["extract", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out",
                                       str(tmp_path / "f.parquet"), "--no-progress", *extra])
        assert res.exit_code == 2 and "only used with --backend onnx" in res.output, res.output
        assert extra[0] in res.output


def test_unavailable_provider_is_an_error_unless_fallback_is_allowed(tiny_model, onnx_llava, tiny_data,
                                                                     tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine's ONNX Runtime has CUDA; the fallback path needs one without")
    line = _error(tiny_model, onnx_llava, tiny_data[0], "--provider", "cuda")
    assert "--provider cuda" in line and "--allow-fallback" in line
    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(cli,
                             ["extract", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out",
                              str(out),
                                   "--no-progress", "--backend", "onnx", "--onnx", str(onnx_llava),
                                   "--provider", "cuda",
                                   "--allow-fallback"])
    assert res.exit_code == 0, res.output
    meta = read_features(out).meta
    assert meta["environment"]["backend"]["provider"] == "CPUExecutionProvider"
    assert meta["config"]["provider"] == "cuda" and meta["config"]["allow_fallback"] is True


def test_a_broken_runtime_mix_is_detected(monkeypatch):
    monkeypatch.setattr(onnx_backend.importlib_metadata, "version", lambda dist: "1.0")
    with pytest.raises(AuditInputError,
                       match="both onnxruntime and onnxruntime-gpu are installed.*pip uninstall"):
        onnx_backend.import_onnxruntime()


def test_session_options_are_set_deliberately():
    import onnxruntime as ort

    opts = onnx_backend.session_options(ort, 3)
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)


def test_an_unreadable_image_is_still_a_row_with_onnx(tiny_model, onnx_llava, tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    recs = [{"id": f"r{i}", "image": "bad.png" if i == 1 else "ok.png",
             "conversations": [{"from": "human", "value": "<image>\nWhat digit?"},
                               {"from": "gpt", "value": "one"}]}
            for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    out = tmp_path / "f.parquet"
    res = CliRunner().invoke(cli,
                             ["extract", "--model", str(tiny_model), "--data", str(tmp_path / "d.json"),
                              "--out",
                                   str(out), "--no-progress", "--backend", "onnx", "--onnx", str(onnx_llava)])
    assert res.exit_code == 0, res.output
    assert [r.status for r in read_features(out).rows] == ["ok", "error", "ok"]
