"""InternVL family (the transformers-native InternVLForConditionalGeneration):
InternViT + pixel-shuffle projector + Qwen2/Llama decoder.

Like Qwen2-VL's, the combined `InternVLProcessor` needs a video processor
(torchvision). Without it the inputs are assembled from the tokenizer, the
PIL image processor (`GotOcr2ImageProcessorPil`) and the chat template, as the
processor would: `<image>` becomes `<img>` + `<IMG_CONTEXT>` x
(image_seq_length x tiles) + `</img>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoTokenizer, GotOcr2ImageProcessorPil, InternVLForConditionalGeneration

from .base import FamilyBase
from .qwen2_vl import read_chat_template

@dataclass(frozen=True)
class AssembledInternVLProcessor:
    tokenizer: Any
    image_processor: GotOcr2ImageProcessorPil
    chat_template: str
    image_seq_length: int

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> str:
        return self.tokenizer.apply_chat_template(messages, chat_template=self.chat_template, **kwargs)


class InternVLFamily(FamilyBase):
    name = "internvl"
    model_types = ("internvl",)
    model_class = InternVLForConditionalGeneration

    def load_processor(self, model_dir: Path, model: torch.nn.Module) -> Any:
        try:
            return super().load_processor(model_dir, model)
        except (ImportError, AttributeError, ValueError, OSError, TypeError):  # no torchvision
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True,
                                                      trust_remote_code=False)
            return AssembledInternVLProcessor(
                tokenizer, GotOcr2ImageProcessorPil.from_pretrained(model_dir, local_files_only=True),
                read_chat_template(model_dir, tokenizer), int(model.config.image_seq_length))

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        texts = self.chat_texts(processor, prompts)
        if not isinstance(processor, AssembledInternVLProcessor):
            return dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
        pixels = processor.image_processor(images=images, return_tensors="pt")
        tok = processor.tokenizer
        tiles = pixels.pop("num_patches").tolist()
        # As InternVLProcessor does: the template's one context token per image
        # becomes <img>, image_seq_length context tokens per tile, </img>.
        texts = [t.replace(tok.context_image_token, tok.start_image_token + tok.context_image_token
                           * (processor.image_seq_length * int(n)) + tok.end_image_token, 1)
                 for t, n in zip(texts, tiles)]
        return {**dict(tok(texts, return_tensors="pt", padding=True)), **pixels}
