"""Safe loading of an untrusted checkpoint: local folder, safetensors only, no remote code."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..errors import AuditInputError
from .base import LoadedModel, ModelFamily
from .idefics3 import Idefics3Family
from .internvl import InternVLFamily
from .llava import LlavaFamily, LlavaNextFamily
from .paligemma import PaliGemmaFamily
from .qwen2_vl import Qwen2_5_VLFamily, Qwen2VLFamily

FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (LlavaFamily(), LlavaNextFamily(), Qwen2VLFamily(), Qwen2_5_VLFamily(), InternVLFamily(),
                        PaliGemmaFamily(), Idefics3Family())}
_BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt"}
# Files in which transformers would find a pointer to code shipped with the checkpoint.
_CODE_POINTERS = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def refuse_remote_code(model_dir: Path) -> None:
    """A checkpoint that asks for its own code (`auto_map`, or .py files) is refused:
    code from a stranger never runs here."""
    for name in _CODE_POINTERS:
        path = Path(model_dir) / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            continue  # reported where the file is read for real
        if isinstance(data, dict) and "auto_map" in data:
            raise AuditInputError(
                f"{path}: asks for remote code (auto_map {sorted(data['auto_map'])}); bye-audit never runs "
                "code shipped with a checkpoint: save it with a transformers-native class instead")
    scripts = sorted(p.name for p in Path(model_dir).glob("*.py"))
    if scripts:
        raise AuditInputError(f"{model_dir}: ships Python code ({', '.join(scripts)}); bye-audit never runs "
                              "code shipped with a checkpoint: remove it and use a transformers-native class")


def read_model_type(model_dir: Path, allow_pickle: bool = False) -> str:
    """The config's `model_type`, checked against the supported families; the
    weights must be safetensors, or (with `allow_pickle`) pickle files that
    will go through torch's weights-only loader."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AuditInputError(f"{model_dir}: model folder not found; pass a folder saved with "
                              "save_pretrained")
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise AuditInputError(f"{model_dir}: no config.json; pass a folder saved with save_pretrained")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditInputError(f"{cfg_path}: not valid JSON ({e}); the checkpoint is damaged") from None
    except RecursionError:
        raise AuditInputError(f"{cfg_path}: JSON nested too deeply; the checkpoint is damaged") from None
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type not in _BY_MODEL_TYPE:
        raise AuditInputError(
            f"{cfg_path}: unsupported model_type {model_type!r}; supported: "
            f"{', '.join(sorted(_BY_MODEL_TYPE))}")
    refuse_remote_code(model_dir)
    if not any(model_dir.glob("*.safetensors")):
        others = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if others and allow_pickle:
            return model_type
        hint = (f" (found {', '.join(others)}: pickle-based weights are refused unless --allow-pickle, "
                "which loads them through torch's weights-only loader)") if others else ""
        raise AuditInputError(
            f"{model_dir}: no .safetensors weights{hint}; convert the checkpoint to safetensors")
    return model_type


_LAYER_KEYS = frozenset({"num_hidden_layers", "depth"})  # each layer holds at least one tensor


def _tensor_shapes(model_dir: Path) -> list[list[int]]:
    """The shape of every tensor in the folder's safetensors files, from their headers only."""
    from safetensors import safe_open

    shapes = []
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                shapes.extend(list(f.get_slice(k).get_shape()) for k in f.keys())
        except Exception as e:  # noqa: BLE001 - safetensors refuses damaged or lying headers
            raise AuditInputError(f"{path}: not a valid safetensors file ({_first_line(e)}); "
                                  "the checkpoint is damaged") from None
    return shapes


def available_memory(device: str) -> int | None:
    """Bytes free for the weights on `device` ("cpu", "cuda", "cuda:N"); None when unknown."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # not Linux: no check


def check_memory(values: int, dtype: str, device: str, model_dir: Path) -> None:
    """Refuse, in one line, a model whose weights (`values` numbers in `dtype`)
    do not fit in the memory `device` has free: a clear error rather than the
    kernel's OOM killer halfway through loading."""
    available = available_memory(device)
    need = values * torch.finfo(getattr(torch, dtype)).bits // 8
    if available is not None and need > available:
        hint = " or --dtype bfloat16 (half of float32)" if dtype == "float32" else ""
        raise AuditInputError(f"{model_dir}: the weights need {need / 2 ** 30:.1f} GiB in {dtype}, but "
                              f"{device} has {available / 2 ** 30:.1f} GiB free; free memory, use a larger "
                              f"machine{hint}")


def check_config_sizes(model_dir: Path, cfg: dict, family: ModelFamily, shapes: list[list[int]]) -> None:
    """Refuse a config.json that asks for more than the checkpoint's tensors hold
    (e.g. num_hidden_layers = 10^6, or a huge hidden_size), before transformers
    allocates a model of that size: first the layer counts against the number of
    tensors, then the parameter count of the model built on the meta device
    (no memory) against the values in the safetensors headers. Smaller
    disagreements are named tensor by tensor when the model loads. `shapes`:
    the weights' tensor shapes (_tensor_shapes)."""
    path = Path(model_dir) / "config.json"

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                name = f"{where}.{k}" if where else str(k)
                if k in _LAYER_KEYS and isinstance(v, int) and not isinstance(v, bool) and v > len(shapes):
                    raise AuditInputError(f"{path}: {name} = {v}, but the weights hold only {len(shapes)} "
                                          "tensors; config.json and the weights do not belong together")
                walk(v, name)

    walk(cfg, "")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            skeleton = family.model_class._from_config(config)
    except Exception:  # noqa: BLE001 - an unbuildable config is reported, in one line, by the real load
        return
    wanted = sum(p.numel() for p in skeleton.parameters())
    held = sum(math.prod(s) for s in shapes)
    # Up to twice what the weights hold is allocated, so that the loading check can
    # name the missing tensors (a half-saved checkpoint); beyond that, nothing is.
    if wanted > 2 * held + 10_000_000:
        raise AuditInputError(f"{path}: describes a model of {wanted:,} parameters, but the weights hold "
                              f"{held:,} values; config.json and the weights do not belong together")


def check_adapter(adapter_dir: Path) -> None:
    """A PEFT adapter folder: adapter_config.json and safetensors weights (pickle refused)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AuditInputError(f"{adapter_dir}: no adapter_config.json; pass a folder saved by PEFT's "
                              "save_pretrained")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        pickled = (adapter_dir / "adapter_model.bin").exists()
        hint = " (adapter_model.bin is pickle-based and refused)" if pickled else ""
        raise AuditInputError(f"{adapter_dir}: no adapter_model.safetensors{hint}; save the adapter with "
                              "safe_serialization=True")


def check_adapter_tensors(peft_model: Any, adapter_dir: Path) -> None:
    """The adapter file must hold exactly the LoRA tensors its config creates:
    PEFT only warns about missing ones (left at their initial values, so the
    adapter does nothing) and ignores extra ones. ValueError otherwise."""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    # "auto" would look up base_model_name_or_path (a stranger's string) on disk
    # or the Hub to guess whether embeddings were resized: never for an audit.
    # An adapter carrying embedding weights fails below as extra tensors.
    expected = set(get_peft_model_state_dict(peft_model, save_embedding_layers=False))
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        present = set(f.keys())
    problems = [f"{len(keys)} {label}: {', '.join(sorted(keys)[:3])}{', ...' if len(keys) > 3 else ''}"
                for keys, label in ((expected - present, "adapter tensors missing"),
                                    (present - expected, "tensors its adapter_config.json does not create"))
                if keys]
    if problems:
        raise ValueError("the adapter's tensors do not match its adapter_config.json ("
                         + "; ".join(problems) + ")")


def _explain(e: Exception) -> str:
    """The first line of a loading error, in our words where a library's would
    mislead: torch's advice to unpickle fully is never right here."""
    text = _first_line(e)
    if "Weights only load failed" in text or "weights_only" in text:
        return ("the pickle file holds more than tensors, and torch's weights-only loader refused it; "
                "bye-audit never unpickles arbitrary objects: convert the weights to safetensors where the "
                "file can be trusted")
    if "instantiate the backend tokenizer" in text:
        return ("no usable tokenizer (tokenizer.json, or tokenizer.model with its config); save the "
                "processor with the checkpoint")
    return text


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; an unavailable CUDA is an input error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AuditInputError(f"--device {device}: torch sees no CUDA device here; use --device cpu or auto")
    return device


def load_model(model_dir: Path, dtype: str = "float32", capture_attention: str | None = None,
               adapter_dir: Path | None = None, allow_pickle: bool = False,
               device: str = "cpu", keep_adapter: bool = False) -> LoadedModel:
    """Load a checkpoint for stage 1; `capture_attention` names a registered attention
    function. Pickle weights load (weights-only) only with `allow_pickle` and no
    safetensors. With `adapter_dir`, a PEFT LoRA adapter is applied: merged into
    the weights (the base model's speed), or with `keep_adapter` kept beside them,
    so that a pass with the adapter disabled scores the answers under the base."""
    model_type = read_model_type(model_dir, allow_pickle)
    family = _BY_MODEL_TYPE[model_type]
    safetensors = any(Path(model_dir).glob("*.safetensors"))
    # Pickle weights have no header to check against; the loading check still applies.
    shapes = _tensor_shapes(model_dir) if safetensors else None
    if shapes is not None:
        check_config_sizes(model_dir,
                           json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")),
                           family, shapes)
    if adapter_dir is not None:
        check_adapter(adapter_dir)
    device = resolve_device(device)
    if dtype == "float16" and device == "cpu":
        raise AuditInputError("--dtype float16 needs a CUDA device (CPU kernels lack it); use --dtype "
                              "bfloat16 or float32 on CPU")
    if shapes is not None:  # the weights load into CPU memory first, then move to the device
        values = sum(math.prod(s) for s in shapes)
        for where in dict.fromkeys(("cpu", device)):
            check_memory(values, dtype, where, Path(model_dir))
    attn = capture_attention or "sdpa"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's pickle-protocol notice: the error line says it all
            model, processor = family.load(Path(model_dir), getattr(torch, dtype), attn, safetensors)
    except Exception as e:  # an untrusted checkpoint can fail in many ways; all are input errors
        raise AuditInputError(f"{model_dir}: cannot load the checkpoint: {_explain(e)}") from None
    peft_model = None
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            with warnings.catch_warnings():
                # PEFT's missing-keys warning: check_adapter_tensors says it once
                warnings.simplefilter("ignore")
                peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False,
                                                       use_safetensors=True)
            check_adapter_tensors(peft_model, Path(adapter_dir))
            peft_model.eval()
            model = peft_model.get_base_model() if keep_adapter else peft_model.merge_and_unload().eval()
        except Exception as e:
            raise AuditInputError(f"{adapter_dir}: cannot apply the adapter to {model_dir}: "
                                  f"{_first_line(e)}") from None
    model = model.to(device)
    n_layers = len(family.decoder_attention_modules(model))
    return LoadedModel(model=model, processor=processor, family=family, model_dir=Path(model_dir),
                       model_type=model_type, n_layers=n_layers, dtype=dtype,
                       attn_implementation=attn, adapter_dir=adapter_dir, device=device,
                       peft=peft_model if keep_adapter else None)


def with_base(loaded: LoadedModel, base_dir: Path, allow_pickle: bool = False) -> LoadedModel:
    """`loaded` with the model it was fine-tuned from, for scoring the answers
    under the base (a full fine-tune). The base must be of the same family and
    tokenise the same way, else the two NLLs would not be about the same tokens."""
    if loaded.peft is not None:
        raise AuditInputError(f"--base {base_dir}: with --adapter the base is the model the adapter applies "
                              "to; drop --base")
    base = load_model(base_dir, loaded.dtype, adapter_dir=None, allow_pickle=allow_pickle,
                      device=loaded.device)
    if base.family.name != loaded.family.name:
        raise AuditInputError(f"--base {base_dir}: a {base.family.name} model, but {loaded.model_dir} is "
                              f"{loaded.family.name}; pass the model the fine-tune started from")
    if base.processor.tokenizer.get_vocab() != loaded.processor.tokenizer.get_vocab():
        raise AuditInputError(f"--base {base_dir}: its tokenizer differs from {loaded.model_dir}'s; pass the "
                              "model the fine-tune started from")
    return replace(loaded, base_model=base.model, base_dir=Path(base_dir))
