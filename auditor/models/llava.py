"""LLaVA-1.5 and LLaVA-NeXT families (LlavaForConditionalGeneration,
LlavaNextForConditionalGeneration): CLIP tower + projector + decoder; NeXT adds
any-resolution tiles and per-row newline tokens, counted by its processor."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

from .base import FamilyBase


class LlavaFamily(FamilyBase):
    name = "llava"
    model_types = ("llava",)
    model_class: Any = LlavaForConditionalGeneration

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = self.chat_texts(processor, prompts)
        return dict(processor(images=images, text=texts, return_tensors="pt", padding=True))


class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT (1.6): the processor expands <image> to the tile and newline
    tokens of each image's size; every one of them counts as an image token."""

    name = "llava_next"
    model_types = ("llava_next",)
    model_class = LlavaNextForConditionalGeneration
