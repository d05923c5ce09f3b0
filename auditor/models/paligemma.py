"""PaliGemma family (PaliGemmaForConditionalGeneration): SigLIP + Gemma decoder,
prefix-LM attention (image and prompt attend to each other both ways).

No chat template: the processor lays out `<image>` x N, BOS, the prompt and a
newline, as in the model's training. The captured row is the last prompt
position's, under the model's own prefix mask.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from transformers import PaliGemmaForConditionalGeneration

from .base import FamilyBase


class PaliGemmaFamily(FamilyBase):
    name = "paligemma"
    model_types = ("paligemma",)
    model_class = PaliGemmaForConditionalGeneration
    uses_chat_template = False  # "<image>" + the instruction, no template

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = [f"{processor.image_token}{p}" for p in prompts]
        batch = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
        batch.pop("labels", None)  # prefill only: no loss
        return batch
