"""Build tiny InternVL models (InternVLForConditionalGeneration) from configs.

Saved without a combined processor (its video half needs torchvision):
tokenizer, GotOcr2ImageProcessorPil and chat_template.jinja.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

from .digits import DIGIT_WORDS, QUESTIONS
from .spec import TinyVLMSpec
from .tokenizer import train_word_tokenizer


@dataclass(frozen=True)
class TinyInternVLSpec(TinyVLMSpec):
    """Defaults: 64 px images, 8 px patches, pixel shuffle 0.5 -> 16 image tokens."""

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size // 2) ** 2


def write_tiny_internvl(folder: Path, spec: TinyInternVLSpec = TinyInternVLSpec(), seed: int = 0) -> Path:
    """Save an untrained tiny InternVL (Qwen2 decoder) with tokenizer, image processor and chat template."""
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS), style="internvl")
    config = InternVLConfig(
        vision_config=dict(hidden_size=spec.vision_hidden, num_hidden_layers=spec.vision_layers,
                           num_attention_heads=spec.vision_heads, intermediate_size=2 * spec.vision_hidden,
                           image_size=spec.image_size, patch_size=spec.patch_size),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=spec.text_hidden,
                         intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
                         num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=spec.image_tokens,
        downsample_ratio=0.5, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GotOcr2ImageProcessorPil(size={"height": spec.image_size, "width": spec.image_size},
                             crop_to_patches=False).save_pretrained(folder)
    (Path(folder) / "chat_template.jinja").write_text(tokenizer.chat_template)
    # What InternVLProcessor reads (it cannot be built without torchvision to save
    # itself): without it, the processor would assume 256 tokens per tile.
    (Path(folder) / "processor_config.json").write_text(json.dumps(
        {"processor_class": "InternVLProcessor", "image_seq_length": spec.image_tokens}, indent=2))
    return folder
