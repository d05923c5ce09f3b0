"""Stage 1 on ONNX Runtime: a graph from `bye-audit export-onnx` instead of the torch model.

The model folder still supplies the processor and config (prompts, image
tokens, M-RoPE positions); the graph must have been exported from that very
folder (digests in its metadata), so the audit's evidence names what really ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Stage1Config
from ..errors import AuditInputError
from ..fileio import sha256_tree
from ..models.base import ModelFamily
from ..models.loading import FAMILIES, read_model_type
from .onnx_graph import FEEDS, processor_digest, read_graph_metadata

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
_INSTALL = "pip install 'bye-audit[onnx]' (CPU) or 'bye-audit[gpu]' (CUDA), never both"


def import_onnxruntime() -> Any:
    """onnxruntime, or an input error saying how to install it or repair a broken mix."""
    present = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib_metadata.version(dist)
            present.append(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    if len(present) == 2:
        raise AuditInputError(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's files, so "
            "neither can be trusted: pip uninstall -y onnxruntime onnxruntime-gpu, then " + _INSTALL)
    try:
        import onnxruntime
    except ImportError as e:
        if present:
            raise AuditInputError(f"{present[0]} is installed but does not import ({e}); its files were "
                                  "likely overwritten by the other runtime: pip uninstall -y onnxruntime "
                                  "onnxruntime-gpu, then " + _INSTALL) from None
        raise AuditInputError(f"--backend onnx needs ONNX Runtime: {_INSTALL}") from None
    return onnxruntime


@dataclass(frozen=True)
class OnnxModel:
    """An exported graph in an ONNX Runtime session, with the processor and
    config of the model folder it was exported from (the Stage1Model of runner.py)."""

    session: Any
    processor: Any
    family: ModelFamily
    config: Any
    model_dir: Path
    model_type: str
    n_layers: int
    onnx_path: Path
    provider: str  # the execution provider the session really uses
    graph: dict[str, Any]  # the graph's bye-audit metadata
    adapter_dir: Path | None = None
    dtype: str = "float32"
    backend: str = "onnx"

    @property
    def device(self) -> str:
        return self.provider

    def forward_rows(self, batch: dict[str, Any]) -> np.ndarray:
        """The graph over each group of samples sharing an input shape; rows (B, L, H, S) fp32."""

        groups = FEEDS[self.family.name](batch, self.config)
        out: np.ndarray | None = None
        for members, feeds in groups:
            rows = self._run(feeds)
            if out is None:
                out = np.empty((len(batch["input_ids"]), *rows.shape[1:]), np.float32)
            out[members] = rows
        assert out is not None
        return out

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.provider == PROVIDERS["cpu"]:
            return self.session.run(["rows"], feeds)[0]
        # On a GPU, bind inputs and outputs on the device: one copy each way per batch.
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output("rows", "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def session_options(ort: Any, threads: int) -> Any:
    """Full graph optimisation (fused attention and layer norms), one batch at a
    time, `threads` intra-op threads (0: ONNX Runtime's default, one per core)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: warnings would interleave with the progress bar
    return opts


def open_session(onnx_path: Path, config: Stage1Config) -> tuple[Any, str]:
    """(session, provider really used). Asking for CUDA or TensorRT and not getting
    it is an error unless `config.allow_fallback`; `get_providers()` is the truth,
    since onnxruntime-gpu lists CUDA even where CUDA cannot load."""
    ort = import_onnxruntime()
    wanted = PROVIDERS[config.provider]
    # Asking ONNX Runtime for a provider its build lacks only earns a warning; skip it, and let the
    # check below speak.
    providers = [p for p in (wanted, PROVIDERS["cpu"]) if p in ort.get_available_providers()]
    providers = list(dict.fromkeys(providers)) or [PROVIDERS["cpu"]]
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=session_options(ort, config.threads),
                                       providers=providers)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file
        raise AuditInputError(f"{onnx_path}: ONNX Runtime cannot load it ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                              "export it again with bye-audit export-onnx") from None
    used = session.get_providers()[0]
    if used != wanted and not config.allow_fallback:
        raise AuditInputError(
            f"--provider {config.provider}: ONNX Runtime loaded {used} instead of {wanted} (available: "
            f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu with a matching CUDA, or "
            "pass --allow-fallback to run on what loaded")
    return session, used


def load_onnx(onnx_path: Path, model_dir: Path, config: Stage1Config,
              adapter_dir: Path | None = None) -> OnnxModel:
    """The ONNX backend for `model_dir`, refusing a graph exported from other files."""
    from transformers import AutoConfig



    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise AuditInputError(f"{onnx_path}: no such file; export one with bye-audit export-onnx")
    graph = read_graph_metadata(onnx_path)
    model_type = read_model_type(model_dir, config.allow_pickle)
    family = FAMILIES.get(graph.get("family", ""))
    if family is None or model_type not in family.model_types:
        raise AuditInputError(f"{onnx_path}: a graph of a {graph.get('model_type')} model, but {model_dir} "
                              f"holds a {model_type} model; export the graph from {model_dir}")
    if processor_digest(model_dir) != graph["processor_sha256"]:
        raise AuditInputError(f"{onnx_path}: exported from a model whose config or processor files differ "
                              f"from {model_dir}'s (shapes and tokens would not match); export the graph "
                              f"from {model_dir} with bye-audit export-onnx")
    if sha256_tree(Path(model_dir)) != graph["model_sha256_tree"]:
        raise AuditInputError(f"{onnx_path}: exported from other weights than {model_dir}'s; export the "
                              f"graph from {model_dir} with bye-audit export-onnx")
    adapter = None if adapter_dir is None else sha256_tree(Path(adapter_dir))
    if adapter != graph.get("adapter_sha256_tree"):
        had = "with an adapter" if graph.get("adapter_sha256_tree") else "without an adapter"
        raise AuditInputError(f"{onnx_path}: exported {had}, which does not match --adapter "
                              f"{adapter_dir or '(none)'}; pass the adapter the graph was exported with, or "
                              "export again")
    session, provider = open_session(onnx_path, config)
    try:
        processor = family.load_processor(Path(model_dir), None)
        model_config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - an untrusted checkpoint can fail in many ways
        raise AuditInputError(f"{model_dir}: cannot load its processor or config: {e}") from None
    return OnnxModel(session=session, processor=processor, family=family, config=model_config,
                     model_dir=Path(model_dir), model_type=model_type, n_layers=int(graph["n_layers"]),
                     onnx_path=onnx_path, provider=provider, graph=graph, adapter_dir=adapter_dir)
