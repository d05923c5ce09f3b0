"""Qwen2-VL and Qwen2.5-VL families (Qwen2VLForConditionalGeneration,
Qwen2_5_VLForConditionalGeneration): dynamic-resolution ViT, 2x2 patch merger,
Qwen2 decoder with multimodal RoPE.

The combined `Qwen2VLProcessor` needs a video processor, which needs
torchvision; without it the processor cannot be built. Then the inputs are
assembled here from the tokenizer, the PIL image processor
(`Qwen2VLImageProcessorPil`) and the checkpoint's chat template, exactly as the
processor would: one `<|image_pad|>` per merged patch, and `mm_token_type_ids`
(1 at image tokens) for M-RoPE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil)

from .base import FamilyBase

IMAGE_PAD = "<|image_pad|>"


@dataclass(frozen=True)
class AssembledProcessor:
    """What the combined processor would do, from its parts."""

    tokenizer: Any
    image_processor: Qwen2VLImageProcessorPil
    chat_template: str

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kwargs)


def load_processor(model_dir: Path) -> Any:
    """The combined processor when it can be built, else an AssembledProcessor."""
    try:
        return AutoProcessor.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    except (ImportError, AttributeError, ValueError, OSError, TypeError):
        pass  # typically: no torchvision for the video processor
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_dir, local_files_only=True)
    return AssembledProcessor(tokenizer, image_processor, read_chat_template(model_dir, tokenizer))


def read_chat_template(model_dir: Path, tokenizer: Any) -> str:
    """The checkpoint's chat template: chat_template.jinja, else the tokenizer's."""
    template_file = Path(model_dir) / "chat_template.jinja"
    template = (template_file.read_text(encoding="utf-8") if template_file.is_file()
                else tokenizer.chat_template)
    if not template:
        raise ValueError("no chat template in the checkpoint (chat_template.jinja or the tokenizer's)")
    return template


class Qwen2VLFamily(FamilyBase):
    name = "qwen2_vl"
    model_types = ("qwen2_vl",)
    model_class: Any = Qwen2VLForConditionalGeneration

    def load_processor(self, model_dir: Path, model: torch.nn.Module) -> Any:
        return load_processor(model_dir)

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = self.chat_texts(processor, prompts)
        if not isinstance(processor, AssembledProcessor):
            return dict(processor(images=images, text=texts, return_tensors="pt", padding=True,
                                  return_mm_token_type_ids=True))
        pixels = processor.image_processor(images=images, return_tensors="pt")
        merge = processor.image_processor.merge_size ** 2
        counts = (pixels["image_grid_thw"].prod(-1) // merge).tolist()
        texts = [t.replace(IMAGE_PAD, IMAGE_PAD * int(n), 1) for t, n in zip(texts, counts)]
        batch = dict(processor.tokenizer(texts, return_tensors="pt", padding=True))
        pad_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        batch["mm_token_type_ids"] = (batch["input_ids"] == pad_id).long()
        return {**batch, **pixels}


class Qwen2_5_VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL: windowed-attention ViT, same processor, prompt and M-RoPE inputs."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    model_class = Qwen2_5_VLForConditionalGeneration
