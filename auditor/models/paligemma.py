"""PaliGemma family (PaliGemmaForConditionalGeneration): SigLIP + Gemma decoder,
prefix-LM attention (image and prompt attend to each other both ways).

No chat template: the processor lays out `<image>` x N, BOS, the prompt and a
newline, as in the model's training. The captured row is the last prompt
position's, under the model's own prefix mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoProcessor, PaliGemmaForConditionalGeneration


class PaliGemmaFamily:
    name = "paligemma"
    model_types = ("paligemma",)

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        model = PaliGemmaForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, attn_implementation=attn_implementation,
            use_safetensors=safetensors, local_files_only=True, trust_remote_code=False)
        processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        return model.eval(), processor

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        return [layer.self_attn for layer in model.model.language_model.layers]

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = [f"{processor.image_token}{p}" for p in prompts]
        batch = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
        batch.pop("labels", None)  # prefill only: no loss
        return batch

    def image_token_mask(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        return batch["input_ids"] == model.config.image_token_id
