"""Stage 1's model, ready to run: the torch checkpoint (and adapter), or the
ONNX graph exported from it, with its chat template checked once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Stage1Config
from ..errors import AuditInputError

if TYPE_CHECKING:  # torch-bound; imported when a model is loaded, never at CLI start-up
    from .runner import Stage1Model


def load(model_dir: Path, config: Stage1Config, adapter_dir: Path | None = None,
         onnx_path: Path | None = None, base_dir: Path | None = None) -> Stage1Model:
    """The checkpoint (and adapter) on the torch model or, with `config.backend`
    "onnx", the graph at `onnx_path`. The answers are scored under a base
    (config.answers and config.base_pass): with an adapter, the same weights
    with the adapter disabled (it stays beside the weights, unmerged); else
    the model at `base_dir`, when given."""
    # torch, transformers and onnxruntime: seconds to import, only when a model is loaded
    from ..models import load_model
    from ..models.capture import CAPTURE_ATTENTION

    if config.backend == "onnx":
        if onnx_path is None:
            raise AuditInputError("--backend onnx needs --onnx FILE (a graph from bye-audit export-onnx)")
        from .onnx_backend import load_onnx  # onnxruntime: an optional dependency

        if base_dir is not None:
            raise AuditInputError(f"--base {base_dir}: the ONNX graph outputs the attention rows only, so "
                                  "it scores no answers; use --backend torch to score them under a base")
        return _check_template(load_onnx(onnx_path, model_dir, config, adapter_dir))
    if onnx_path is not None:
        raise AuditInputError(f"--onnx {onnx_path}: only used with --backend onnx; add it, or drop --onnx")
    base_pass = config.answers and config.base_pass
    if base_dir is not None and not base_pass:
        raise AuditInputError(f"--base {base_dir}: the base scores the answers; drop --no-answers / "
                              "--no-base-pass, or drop --base")
    # The base's config and weights before the submission loads (minutes for a real
    # model); load_model checks the model's and the adapter's before their weights.
    if base_dir is not None:
        from ..models.loading import read_model_type

        if adapter_dir is not None:
            raise AuditInputError(f"--base {base_dir}: with --adapter the base is the model the adapter "
                                  "applies to (--model); drop --base")
        read_model_type(base_dir, config.allow_pickle)
    loaded = load_model(model_dir, config.dtype, capture_attention=CAPTURE_ATTENTION, adapter_dir=adapter_dir,
                        allow_pickle=config.allow_pickle, device=config.device,
                        keep_adapter=base_pass and adapter_dir is not None)
    if base_dir is not None:
        from ..models.loading import with_base

        loaded = with_base(loaded, base_dir, config.allow_pickle)
    return _check_template(loaded)


def _check_template(loaded: Stage1Model) -> Stage1Model:
    """Render the checkpoint's chat template once, within its bounds, before
    stage 1: a template that never returns is refused up front rather than
    once per sample."""
    from ..models.template import TemplateLimitError  # jinja sandbox with limits; beside the torch models

    if loaded.family.uses_chat_template:
        try:
            loaded.family.chat_texts(loaded.processor, ["What is shown in the image?"])
        except TemplateLimitError as e:
            raise AuditInputError(f"{loaded.model_dir}: {e}; bye-audit refuses a chat template that does not "
                                  "render within bounds: fix chat_template.jinja (or the "
                                  "tokenizer's)") from None
        except Exception:  # noqa: BLE001 - any other template error is reported per sample
            pass
    return loaded
