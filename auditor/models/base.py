"""What a model-family adapter provides to stage 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from .capture import capturing, last_prompt_position
from .template import render_bounded


class ModelFamily(Protocol):
    """One adapter per family: build the prompt, find image tokens and the query row."""

    name: str
    model_types: tuple[str, ...]  # config.json "model_type" values it handles
    uses_chat_template: bool  # prompts go through the checkpoint's chat template (chat_texts)

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        """(model in eval mode, processor) from a local folder, no remote code;
        `safetensors=False` (only under --allow-pickle) lets transformers read
        pickle weights through torch's weights-only loader."""

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The language model's self-attention modules, layer 0 first."""

    def chat_texts(self, processor: Any, prompts: list[str]) -> list[str]:
        """Each prompt through the checkpoint's chat template (bounded: models/template.py)."""

    def render_messages(self, processor: Any, messages: list[dict[str, Any]]) -> str:
        """A conversation through the checkpoint's chat template, ending with the
        generation prompt (bounded: models/template.py)."""

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        """Model inputs for a prefill pass: chat template with the assistant prefix."""

    def image_token_mask(self, config: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Bool (B, S): True at the positions of image tokens (`config`: the model's)."""


class FamilyBase:
    """What most families share: a transformers-native class loaded from a local
    folder (no remote code), the checkpoint's processor, a one-image chat prompt,
    the decoder's self-attention modules, image tokens found by id. A family
    overrides what differs."""

    name: str
    model_types: tuple[str, ...]
    model_class: Any
    uses_chat_template = True  # prompts go through the checkpoint's chat template (chat_texts)

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        model, info = self.model_class.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attn_implementation, output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported in `info` (else one unreadable error), then refused
            use_safetensors=safetensors, local_files_only=True, trust_remote_code=False)
        check_loading_info(info)
        return model.eval(), self.load_processor(Path(model_dir), model)

    def load_processor(self, model_dir: Path, model: torch.nn.Module) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in model.model.language_model.layers]

    def chat_texts(self, processor: Any, prompts: list[str]) -> list[str]:
        """Each prompt as a user turn with one image, through the checkpoint's chat
        template, ending where the assistant's answer would start."""
        def text(p: str) -> str:
            return render_bounded(lambda: processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True, tokenize=False), p)

        return [text(p) for p in prompts]

    def render_messages(self, processor: Any, messages: list[dict[str, Any]]) -> str:
        """A conversation through the checkpoint's chat template, ending where the
        next answer would start (the later answer turns are scored after it)."""
        written = "".join(part.get("text", "") for m in messages for part in m["content"])
        return render_bounded(lambda: processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False), written)

    def image_token_mask(self, config: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.as_tensor(batch["input_ids"]) == config.image_token_id


def check_loading_info(info: dict[str, Any]) -> None:
    """Refuse a checkpoint whose tensors do not fill the model exactly: transformers
    would initialise missing weights at random (and drop unexpected ones), and
    an audit of random weights is a verdict about another model. ValueError,
    one line, naming the first tensors of each kind."""
    def name(k: Any) -> str:  # mismatched keys are (name, checkpoint shape, model shape)
        if isinstance(k, tuple) and len(k) == 3:
            return f"{k[0]} (checkpoint {list(k[1])}, config {list(k[2])})"
        return str(k)

    def some(keys: Any) -> str:
        names = sorted(map(name, keys))
        return ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")

    problems = [f"{len(info[kind])} {label}: {some(info[kind])}"
                for kind, label in (("missing_keys", "weights missing from the checkpoint"),
                                    ("unexpected_keys", "tensors the model does not have"),
                                    ("mismatched_keys", "tensors of the wrong shape"))
                if info.get(kind)]
    if problems:
        raise ValueError("the checkpoint's tensors do not match its config.json (" + "; ".join(problems) +
                         "); bye-audit audits only complete checkpoints, never randomly filled ones")


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    processor: Any
    family: ModelFamily
    model_dir: Path
    model_type: str
    n_layers: int
    dtype: str
    attn_implementation: str
    adapter_dir: Path | None = None  # a PEFT adapter applied to the weights
    device: str = "cpu"
    backend: str = "torch"
    onnx_path: Path | None = None  # only the ONNX backend runs on a graph
    # The base the answers are also scored under: the adapter's PeftModel (its
    # adapter disabled for that pass), or a second model loaded from `base_dir`.
    peft: Any = None
    base_model: torch.nn.Module | None = None
    base_dir: Path | None = None
    scores_answers: bool = True  # the torch pass can append the answer and return its logits

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def reference(self) -> str | None:
        """What the base pass runs: "adapter disabled", the base folder, or None (no base pass)."""
        if self.peft is not None:
            return "adapter disabled"
        return None if self.base_dir is None else str(self.base_dir)

    def _on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.to(self.model.device, self.model.dtype) if v.is_floating_point()
                    else v.to(self.model.device))
                if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}  # pixels in the model's dtype

    def forward_rows(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One prefill pass; the captured rows (B, L, H, S), fp32 on the CPU."""
        return self.forward(batch, last_prompt_position(torch.as_tensor(batch["attention_mask"])), 1)[0]

    def forward(self, batch: dict[str, torch.Tensor], query_pos: torch.Tensor, keep: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: the rows of `query_pos` (B,) captured (B, L, H, S), fp32 on
        the CPU, and the logits of the last `keep` positions (B, keep, V)."""
        batch = self._on_device(batch)
        modules = self.family.decoder_attention_modules(self.model)
        with torch.inference_mode(), capturing(modules, query_pos.to(self.model.device)) as cap:
            out = self.model(**batch, use_cache=False, logits_to_keep=keep)
        return torch.stack(cap.rows, dim=1).cpu(), out.logits

    def base_logits(self, batch: dict[str, torch.Tensor], keep: int) -> torch.Tensor:
        """The logits of the last `keep` positions (B, keep, V) under the base:
        the same weights with the adapter disabled, or the base model."""
        batch = self._on_device(batch)
        with torch.inference_mode():
            if self.peft is not None:
                with self.peft.disable_adapter():
                    return self.model(**batch, use_cache=False, logits_to_keep=keep).logits
            if self.base_model is None:
                raise ValueError("no base to score the answers under (--adapter or --base)")
            return self.base_model(**batch, use_cache=False, logits_to_keep=keep).logits
