"""Idefics3 family (Idefics3ForConditionalGeneration): SigLIP-style tower, pixel
shuffle connector, Llama decoder. Its processor expands `<image>` into
`<fake_token_around_image>`, `<global-img>` / `<row_i_col_j>` tags and
`image_seq_len` image tokens per tile; only the image tokens count as image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoProcessor, Idefics3ForConditionalGeneration


class Idefics3Family:
    name = "idefics3"
    model_types = ("idefics3",)

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        model = Idefics3ForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attn_implementation,
            use_safetensors=safetensors, local_files_only=True, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        return model.eval(), processor

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in model.model.text_model.layers]

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True, tokenize=False)
            for p in prompts
        ]
        return dict(processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True))

    def image_token_mask(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        return batch["input_ids"] == model.config.image_token_id
