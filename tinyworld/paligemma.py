"""Build tiny PaliGemma models (SigLIP + Gemma) from configs, with a real PaliGemmaProcessor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                          SiglipImageProcessorPil)

from .digits import DIGIT_WORDS, QUESTIONS
from .spec import TinyVLMSpec
from .tokenizer import train_word_tokenizer


@dataclass(frozen=True)
class TinyPaliGemmaSpec(TinyVLMSpec):
    """32 px images, 8 px patches -> 16 image tokens."""

    image_size: int = 32

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def write_tiny_paligemma(folder: Path, spec: TinyPaliGemmaSpec = TinyPaliGemmaSpec(), seed: int = 0) -> Path:
    """Save an untrained tiny PaliGemma with its processor (safetensors) to `folder`."""
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    image_processor = SiglipImageProcessorPil(size={"height": spec.image_size, "width": spec.image_size})
    image_processor.image_seq_length = spec.image_tokens
    processor = PaliGemmaProcessor(image_processor=image_processor,
                                   tokenizer=tokenizer)  # adds loc/seg tokens
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=spec.vision_hidden,
                           intermediate_size=2 * spec.vision_hidden, num_hidden_layers=spec.vision_layers,
                           num_attention_heads=spec.vision_heads, image_size=spec.image_size,
                           patch_size=spec.patch_size, projection_dim=spec.text_hidden),
        text_config=dict(model_type="gemma", vocab_size=len(processor.tokenizer),
                         hidden_size=spec.text_hidden,
                         intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
                         num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
                         head_dim=spec.text_hidden // spec.text_heads, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        image_token_id=processor.image_token_id, projection_dim=spec.text_hidden,
        hidden_size=spec.text_hidden)
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
