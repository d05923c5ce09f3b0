"""The runtime side of an exported graph: its metadata, its inputs, and the
digest that ties it to a model folder.

`bye-audit export-onnx` (the `exporters` package, which builds on
`auditor.models`) writes graphs; the ONNX backend only reads them, through this
module, so the runtime never imports the exporter (tests/test_layout.py).
A graph maps a batch to `rows` (B, L, H, S): per decoder layer, the fp32
softmax row of the last prompt position over every key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..errors import AuditInputError
from ..fileio import sha256_file

META_KEY = "bye_audit.graph"  # ONNX metadata_props key holding the graph's JSON metadata
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}


def processor_digest(model_dir: Path) -> str:
    """SHA-256 over every file of a model folder but its weights: config,
    tokenizer, image processor, chat template. Two folders that would build the
    same inputs and shapes share it."""
    root = Path(model_dir)
    lines = [f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n"
             for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in WEIGHT_SUFFIXES
             and not p.name.endswith(".index.json")]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def read_graph_metadata(path: Path) -> dict[str, Any]:
    """The bye-audit metadata of an exported graph (weights not loaded)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is an input error
        raise AuditInputError(f"{path}: not a readable ONNX file ({type(e).__name__}); "
                              "export one with bye-audit export-onnx") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise AuditInputError(f"{path}: not a bye-audit graph (no {META_KEY} metadata); export one with "
                              "bye-audit export-onnx")
    return json.loads(props[META_KEY])


def llava_feeds(batch: dict[str, Any], config: Any) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """The whole batch as one group: every LLaVA image has the same size."""
    return [(list(range(len(batch["input_ids"]))), {
        "pixel_values": _np(batch["pixel_values"], np.float32),
        "input_ids": _np(batch["input_ids"], np.int64),
        "attention_mask": _np(batch["attention_mask"], np.int64)})]


def qwen2_vl_feeds(batch: dict[str, Any], config: Any) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """Inputs for each group of samples sharing a patch grid: (sample indices, feeds).

    M-RoPE positions come from the model's own `get_rope_index` run on a stand-in
    that carries only the config (no weights are needed for them).
    """
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel
    from transformers.vision_utils import get_vision_position_ids

    ids = torch.as_tensor(batch["input_ids"])
    mask = torch.as_tensor(batch["attention_mask"])
    mm = torch.as_tensor(batch["mm_token_type_ids"])
    grids = torch.as_tensor(batch["image_grid_thw"])
    pixels = torch.as_tensor(batch["pixel_values"])
    per_image = grids.prod(-1)
    starts = torch.cumsum(per_image, 0) - per_image
    stand_in = SimpleNamespace(config=config)
    stand_in.get_vision_position_ids = Qwen2VLModel.get_vision_position_ids.__get__(stand_in)
    merge = config.vision_config.spatial_merge_size
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(grids.tolist()):
        groups.setdefault(tuple(g), []).append(i)
    out = []
    for grid, members in groups.items():
        sel = torch.tensor(members)
        n = int(np.prod(grid))
        position_ids, _ = Qwen2VLModel.get_rope_index(stand_in, ids[sel], mm_token_type_ids=mm[sel],
                                                      image_grid_thw=grids[sel], attention_mask=mask[sel])
        out.append((members, {
            "pixel_values": _np(torch.stack([pixels[s:s + n] for s in starts[sel].tolist()]), np.float32),
            "vision_position_ids": _np(get_vision_position_ids(grids[sel][:1], merge), np.int64),
            "input_ids": _np(ids[sel], np.int64), "attention_mask": _np(mask[sel], np.int64),
            "position_ids": _np(position_ids, np.int64)}))
    return out


def _np(x: Any, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.cpu().numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


# Per family: the graph's inputs in order with their dynamic axes ({axis: dimension
# name}), and `feeds(processor batch, config) -> [(sample indices, inputs)]`.
INPUTS: dict[str, dict[str, dict[int, str]]] = {
    "llava": {"pixel_values": {0: "batch"}, "input_ids": {0: "batch", 1: "seq"},
              "attention_mask": {0: "batch", 1: "seq"}},
    "qwen2_vl": {"pixel_values": {0: "batch", 1: "patches"}, "vision_position_ids": {0: "patches"},
                 "input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                 "position_ids": {1: "batch", 2: "seq"}},
}
FEEDS: dict[str, Callable[[dict[str, Any], Any], list[tuple[list[int], dict[str, np.ndarray]]]]] = {
    "llava": llava_feeds, "qwen2_vl": qwen2_vl_feeds}
