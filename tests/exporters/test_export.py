"""export-onnx: one graph per checkpoint, dynamic batch and length, opset >= 18,
its provenance in the metadata; a LoRA export gives the merged model's rows."""

import json

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner

from auditor.cli import cli
from auditor.extract.onnx_graph import META_KEY, processor_digest, read_graph_metadata
from auditor.models import load_model
from auditor.models.capture import CAPTURE_ATTENTION
from exporters import GRAPHS, example_batch, export_onnx
from tinyworld.internvl import write_tiny_internvl


def test_graph_has_dynamic_axes_opset_and_provenance(tiny_model, onnx_llava):
    model = onnx.load(str(onnx_llava), load_external_data=False)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input}
    assert list(shapes) == ["pixel_values", "input_ids", "attention_mask"]
    batch, seq = shapes["input_ids"]
    assert isinstance(batch, str) and isinstance(seq, str) and batch != seq
    assert shapes["pixel_values"][0] == batch and shapes["attention_mask"] == [batch, seq]
    meta = read_graph_metadata(onnx_llava)
    assert meta["family"] == "llava" and meta["n_layers"] == 8 and meta["adapter_sha256_tree"] is None
    assert meta["processor_sha256"] == processor_digest(tiny_model)
    assert json.loads({p.key: p.value for p in model.metadata_props}[META_KEY]) == meta
    # the folder holds the graph only: no staging leftovers
    assert sorted(p.name for p in onnx_llava.parent.iterdir()) == ["graph.onnx"]


def test_the_graph_outputs_the_rows_only(onnx_llava):
    """The entropies come from the rows in NumPy, as with the torch backend (one
    implementation; test_onnx_backend.py checks the features against torch's)."""
    session = ort.InferenceSession(str(onnx_llava), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["rows"]
    assert read_graph_metadata(onnx_llava)["outputs"] == ["rows"]


def _rows(graph, feeds):
    return ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(["rows"], feeds)[0]


def test_export_with_lora_adapter_gives_the_merged_models_rows(tiny_model, onnx_llava, adapter_and_merged,
                                                               tmp_path):
    adapter, merged = adapter_and_merged
    with_adapter = tmp_path / "adapter.onnx"
    meta = export_onnx(tiny_model, with_adapter, adapter_dir=adapter)
    assert meta["adapter_sha256_tree"] is not None
    # the merged model's own rows, from torch (a second export of the merged
    # model cost 40 s; the graph's fidelity to torch is test_onnx_backend.py's)
    loaded = load_model(merged, capture_attention=CAPTURE_ATTENTION)
    batch = example_batch(loaded)
    feeds = GRAPHS["llava"].feeds(batch, loaded.model.config)[0][1]
    a = _rows(with_adapter, feeds)
    np.testing.assert_allclose(a, loaded.forward_rows(batch).numpy(), atol=1e-5)
    # and the adapter really changed the graph: the base model's rows differ
    assert np.abs(_rows(onnx_llava, feeds) - a).max() > 1e-4


def test_unsupported_family_is_a_clear_error(tmp_path):
    model = write_tiny_internvl(tmp_path / "internvl")
    res = CliRunner().invoke(cli, ["export-onnx", "--model", str(model), "--out", str(tmp_path / "g.onnx")])
    assert res.exit_code == 2, res.output
    assert "internvl family cannot be exported to ONNX yet" in res.output and "--backend torch" in res.output
    assert not (tmp_path / "g.onnx").exists()


def test_export_refuses_an_output_inside_the_model(tiny_model):
    res = CliRunner().invoke(cli,
                             ["export-onnx", "--model", str(tiny_model), "--out", str(tiny_model / "g.onnx")])
    assert res.exit_code == 2 and "inside the input folder" in res.output
    assert not (tiny_model / "g.onnx").exists()
