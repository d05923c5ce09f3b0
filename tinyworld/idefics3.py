"""Build tiny Idefics3 models from configs, with a real Idefics3Processor (PIL image processor)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil,
                          Idefics3Processor)

from .digits import DIGIT_WORDS, QUESTIONS
from .spec import TinyVLMSpec
from .tokenizer import IMAGE_TOKEN, train_word_tokenizer


@dataclass(frozen=True)
class TinyIdefics3Spec(TinyVLMSpec):
    """64 px images (no splitting), 8 px patches, scale factor 2 -> 16 image tokens."""

    scale_factor: int = 2

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor ** 2


def write_tiny_idefics3(folder: Path, spec: TinyIdefics3Spec = TinyIdefics3Spec(), seed: int = 0) -> Path:
    """Save an untrained tiny Idefics3 with its processor (safetensors) to `folder`."""
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS), style="idefics3")
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": spec.image_size},
                                                max_image_size={"longest_edge": spec.image_size},
                                                do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=spec.image_tokens, chat_template=tokenizer.chat_template)
    config = Idefics3Config(
        vision_config=dict(hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                           num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                           image_size=spec.image_size, patch_size=spec.patch_size),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=spec.text_hidden,
                         intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
                         num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), scale_factor=spec.scale_factor,
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
