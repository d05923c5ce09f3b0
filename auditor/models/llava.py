"""LLaVA-1.5 and LLaVA-NeXT families (LlavaForConditionalGeneration,
LlavaNextForConditionalGeneration): CLIP tower + projector + decoder; NeXT adds
any-resolution tiles and per-row newline tokens, counted by its processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration


class LlavaFamily:
    name = "llava"
    model_types = ("llava",)
    model_class: Any = LlavaForConditionalGeneration

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        model = self.model_class.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attn_implementation,
            use_safetensors=safetensors, local_files_only=True, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(
            model_dir, local_files_only=True, trust_remote_code=False)
        return model.eval(), processor

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in model.model.language_model.layers]

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
        return dict(batch)

    def image_token_mask(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        return batch["input_ids"] == model.config.image_token_id


class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT (1.6): the processor expands <image> to the tile and newline
    tokens of each image's size; every one of them counts as an image token."""

    name = "llava_next"
    model_types = ("llava_next",)
    model_class = LlavaNextForConditionalGeneration
