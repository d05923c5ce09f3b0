"""Export the attention-producing graph of a checkpoint to ONNX (`bye-audit export-onnx`).

The graph (graphs.py) computes exactly what stage 1 needs: the captured
attention rows of every decoder layer, from pixels and token ids. Its metadata
names the family and the digests of the files it came from, so the ONNX
backend (auditor/extract/onnx_backend.py) can refuse a graph that does not
belong to the model folder it is run with.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor import __version__
from auditor.errors import AuditInputError
from auditor.extract.onnx_graph import META_KEY, processor_digest
from auditor.fileio import sha256_tree
from auditor.models import load_model
from auditor.models.capture import CAPTURE_ATTENTION_ADDITIVE

from .graphs import GRAPHS

OPSET = 18
# Protobuf cannot hold a model over 2 GB; above that the weights go to a side file.
INLINE_LIMIT = 2 * 1024 ** 3 - 64 * 1024 ** 2


def graph_metadata(loaded: Any, model_dir: Path, adapter_dir: Path | None) -> dict[str, Any]:
    cfg = loaded.model.config
    text = cfg.get_text_config()
    return {"tool": {"name": "bye-audit", "version": __version__}, "family": loaded.family.name,
            "model_type": loaded.model_type, "n_layers": loaded.n_layers,
            "n_heads": text.num_attention_heads, "image_token_id": cfg.image_token_id,
            "inputs": list(GRAPHS[loaded.family.name].inputs), "outputs": ["rows"], "opset": OPSET,
            "processor_sha256": processor_digest(model_dir),
            "model_sha256_tree": sha256_tree(Path(model_dir)),
            "adapter_sha256_tree": None if adapter_dir is None else sha256_tree(Path(adapter_dir))}


def example_batch(loaded: Any) -> dict[str, Any]:
    """Two samples of different prompt lengths, so no axis is traced as a constant."""
    from PIL import Image

    images = [Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 200))]
    prompts = ["What is shown?", "Describe the picture in one short sentence, please."]
    return loaded.family.build_batch(loaded.processor, images, prompts)


def export_onnx(model_dir: Path, out: Path, adapter_dir: Path | None = None, allow_pickle: bool = False,
                on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the graph of `model_dir` (with `adapter_dir` merged) to `out`; returns its metadata.

    Weights are inline below 2 GB, else in `out` + ".data" beside it. Both files
    appear only once complete (written in a temporary folder, then renamed).
    """
    import torch


    step = on_step or (lambda _msg: None)
    out = Path(out)
    for p in (model_dir, adapter_dir):
        if p is not None and (out.resolve() == Path(p).resolve()
                              or out.resolve().is_relative_to(Path(p).resolve())):
            raise AuditInputError(f"{out}: inside the input folder {p}; choose another --out")
    step("loading the checkpoint")
    loaded = load_model(model_dir, "float32", capture_attention=CAPTURE_ATTENTION_ADDITIVE,
                        adapter_dir=adapter_dir,
                        allow_pickle=allow_pickle)
    spec = GRAPHS.get(loaded.family.name)
    if spec is None:
        raise AuditInputError(
            f"{model_dir}: the {loaded.family.name} family cannot be exported to ONNX yet (supported: "
            f"{', '.join(sorted(GRAPHS))}); run stage 1 with --backend torch")
    wrapper = spec.wrapper(loaded.model, loaded.family.decoder_attention_modules(loaded.model)).eval()
    feeds = spec.feeds(example_batch(loaded), loaded.model.config)[0][1]
    args = tuple(torch.from_numpy(feeds[name]) for name in spec.inputs)
    dims: dict[str, Any] = {}
    dynamic = {name: {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in axes.items()}
               for name, axes in spec.inputs.items()}
    meta = graph_metadata(loaded, Path(model_dir), adapter_dir)
    size = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    step(f"tracing and converting ({size / 2 ** 20:.0f} MiB of weights)")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and axis-renaming notices
        try:
            program = torch.onnx.export(wrapper, args, input_names=list(spec.inputs),
                                        output_names=["rows"], dynamic_shapes=dynamic,
                                        opset_version=OPSET, dynamo=True, verbose=False)
        except Exception as e:  # noqa: BLE001 - e.g. an architecture variant the wrapper does not cover
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise AuditInputError(f"{model_dir}: the ONNX export failed ({type(e).__name__}: {first}); "
                                  "run stage 1 with --backend torch") from None
    program.model.metadata_props[META_KEY] = json.dumps(meta, sort_keys=True)
    step("writing")
    out.parent.mkdir(parents=True, exist_ok=True)
    external = size > INLINE_LIMIT
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        program.save(staged, external_data=external)
        side = [p for p in Path(tmp).iterdir() if p != staged]
        for p in side:  # weights first, so a visible graph always has its data
            os.replace(p, out.parent / p.name)
        os.replace(staged, out)
    meta["external_data"] = [p.name for p in side]
    return meta


__all__ = ["GRAPHS", "export_onnx"]
