"""manifest.json: the SHA-256 of everything an audit read and wrote.

Every file is named by a root and its path under it, so a verifier can find it
again after the bundle moved: `model/…`, `adapter/…`, `base/…` (the base
pass's model, --base), `dataset/<file name>`,
`images/<path under the image root>`, `onnx/<graph file>` (ONNX backend),
`outputs/<file name>`. `roots` records
where each root was at audit time.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .. import __version__
from ..data import Dataset
from ..features.provenance import Provenance
from ..fileio import json_bytes, real_path, sha256_bytes
from ..preflight import source_date_epoch

# 2: environment split into stage1 (the features' provenance) and analysis.
MANIFEST_SCHEMA_VERSION = 2
# Libraries whose versions can change a feature, a verdict or a rendered byte
# (the ONNX Runtime builds where installed: None otherwise).
LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "safetensors", "numpy", "scipy", "scikit-learn",
             "pyarrow", "pillow", "onnx", "onnxruntime", "onnxruntime-gpu", "jinja2", "matplotlib",
             "weasyprint", "cryptography", "securesystemslib")


def library_versions() -> dict[str, str | None]:
    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {name: v(name) for name in LIBRARIES}


def audit_environment(provenance: Provenance) -> dict[str, Any]:
    """The versions that produced an audit: `stage1`, what computed the features
    (their provenance; None for features imported without one), and
    `analysis`, this process (stages 2-3 and the outputs)."""
    return {"stage1": None if provenance.environment is None else provenance.environment.to_dict(),
            "analysis": {"python": platform.python_version(), "platform": platform.platform(),
                         "libraries": library_versions()}}


def versions_line(libraries: Any) -> str:
    """{"torch": "2.13.0", "onnx": None, ...} -> "torch 2.13.0; ..." (the
    installed ones, in LIBRARIES' order, then any other by name: a signed
    record's keys come back sorted); "" for anything but a mapping."""
    if not isinstance(libraries, dict):
        return ""
    order = sorted(libraries, key=lambda k: (LIBRARIES.index(k) if k in LIBRARIES else len(LIBRARIES), k))
    return "; ".join(f"{k} {libraries[k]}" for k in order if isinstance(libraries[k], str))


def _tree(root: Path, prefix: str) -> dict[str, Path]:
    return {f"{prefix}/{p.relative_to(root).as_posix()}": p
            for p in sorted(root.rglob("*")) if p.is_file()}


def onnx_files(onnx_path: Path) -> list[Path]:
    """An exported graph and its external weights (`<name>.data`), if any."""
    p = Path(onnx_path)
    return [q for q in sorted(p.parent.glob(f"{p.name}*")) if q.is_file()
            and q.name in (p.name, p.name + ".data")]


def input_files(dataset: Dataset, model_dir: Path | None = None,
                adapter_dir: Path | None = None, onnx_path: Path | None = None,
                base_dir: Path | None = None) -> dict[str, Path]:
    """Subject name -> file, for every input of an audit (the model folder, the
    adapter folder, the base folder, the ONNX graph stage 1 ran on, the dataset
    file and each image a record references)."""
    files: dict[str, Path] = {}
    if model_dir is not None:
        files.update(_tree(Path(model_dir), "model"))
    if adapter_dir is not None:
        files.update(_tree(Path(adapter_dir), "adapter"))
    if base_dir is not None:
        files.update(_tree(Path(base_dir), "base"))
    if onnx_path is not None:
        files.update({f"onnx/{p.name}": p for p in onnx_files(onnx_path)})
    files[f"dataset/{dataset.path.name}"] = dataset.path
    root = _image_prefix(dataset)
    seen: set[str] = set()
    for s in dataset.samples:
        # Skipped records (missing, escaping) have no image to vouch for; an
        # image several records share is one subject.
        path = s.image  # already resolved under the root by the reader
        if path is None or s.skip_reason is not None:
            continue
        if path not in seen and os.path.isfile(path):
            if path.startswith(root):
                files["images/" + Path(path[len(root):]).as_posix()] = Path(path)
            else:  # --absolute-images: named by its absolute path (root "absolute": /)
                files["absolute/" + Path(path).as_posix().lstrip("/")] = Path(path)
        seen.add(path)
    return files


def _image_prefix(dataset: Dataset) -> str:
    """The resolved image root with a trailing separator: what images under it start with."""
    return str(real_path(dataset.image_root)).rstrip(os.sep) + os.sep


def roots(dataset: Dataset, model_dir: Path | None, adapter_dir: Path | None,
          onnx_path: Path | None = None, base_dir: Path | None = None) -> dict[str, str | None]:
    def r(p: Path | None) -> str | None:
        return None if p is None else str(Path(p).resolve())
    out = {"model": r(model_dir), "adapter": r(adapter_dir), "dataset": r(dataset.path.parent),
           "images": r(dataset.image_root)}
    if base_dir is not None:
        out["base"] = r(base_dir)
    root = _image_prefix(dataset)
    if any(s.image is not None and s.skip_reason is None and not s.image.startswith(root)
           for s in dataset.samples):  # images taken by absolute path (--absolute-images)
        out["absolute"] = "/"
    if onnx_path is not None:
        out["onnx"] = r(Path(onnx_path).parent)
    return out


def audit_time() -> datetime:
    """Now, in UTC to the second; or SOURCE_DATE_EPOCH when set (the
    reproducible-builds convention), so a rerun can give identical bytes."""
    epoch = source_date_epoch()
    if epoch is not None:
        return datetime.fromtimestamp(epoch, tz=timezone.utc)
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_id(inputs_sha256: dict[str, str], config: dict[str, Any], audited_at: datetime) -> str:
    """The audit's id, printed on every report page and signed: what was audited
    (every input digest), how (config, tool version) and when. (The manifest's
    own digest cannot serve: the manifest digests the report.)"""
    basis = json_bytes({"inputs": dict(sorted(inputs_sha256.items())), "config": config,
                        "tool": __version__, "audited_at": iso(audited_at)})
    h = sha256_bytes(basis)[:16]
    return "-".join(h[i:i + 4] for i in range(0, 16, 4))


def manifest_dict(inputs_sha256: dict[str, str], outputs_sha256: dict[str, str],
                  root_paths: dict[str, str | None], provenance: Provenance, summary: dict[str, Any]
                  ) -> dict[str, Any]:
    """`inputs_sha256`: subject name (input_files) -> digest; `outputs_sha256`:
    output file name -> digest (all outputs but the manifest and the
    attestation, which cover them)."""
    files = dict(inputs_sha256)
    files.update({f"outputs/{name}": digest for name, digest in outputs_sha256.items()})
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "tool": {"name": "bye-audit", "version": __version__},
        "report_id": summary["report_id"],
        "audited_at": summary["audited_at"],
        "roots": root_paths,
        "files": dict(sorted(files.items())),
        "verdict": summary["verdict"],
        "exit_code": summary["exit_code"],
        "config": summary["config"],
        "environment": audit_environment(provenance),
    }
