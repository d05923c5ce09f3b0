"""Idefics3 family (Idefics3ForConditionalGeneration): SigLIP-style tower, pixel
shuffle connector, Llama decoder. Its processor expands `<image>` into
`<fake_token_around_image>`, `<global-img>` / `<row_i_col_j>` tags and
`image_seq_len` image tokens per tile; only the image tokens count as image."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import Idefics3ForConditionalGeneration

from .base import FamilyBase


class Idefics3Family(FamilyBase):
    name = "idefics3"
    model_types = ("idefics3",)
    model_class = Idefics3ForConditionalGeneration

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in model.model.text_model.layers]

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = self.chat_texts(processor, prompts)
        return dict(processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True))
