"""Build tiny LLaVA models (CLIP vision tower + Llama decoder) from configs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .spec import TinyVLMSpec
from .tokenizer import IMAGE_TOKEN


@dataclass(frozen=True)
class TinyLlavaSpec(TinyVLMSpec):
    """Sizes of a tiny LLaVA (the shared ones, wider and deeper), with a
    position limit. Defaults: 64 px images, 8 px patches -> 64 image tokens."""

    vision_hidden: int = 64
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 128
    text_intermediate: int = 256
    text_layers: int = 8
    max_positions: int = 256

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_processor(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec) -> LlavaProcessor:
    """A real LlavaProcessor: CLIP preprocessing (PIL path) + the local tokenizer."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by "default"
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
    )


def build_tiny_llava(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec = TinyLlavaSpec(),
                     seed: int = 0, attn_implementation: str = "sdpa"
                     ) -> LlavaForConditionalGeneration:
    """A randomly initialised LlavaForConditionalGeneration, deterministic under `seed`."""
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
        image_size=spec.image_size, patch_size=spec.patch_size, projection_dim=spec.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default", vision_feature_layer=-2,
        image_seq_length=spec.image_tokens, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.set_attn_implementation(attn_implementation)
    return model.eval()


def _grid_pinpoints(spec: TinyLlavaSpec) -> list[list[int]]:
    s = spec.image_size
    return [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]


def build_next_processor(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec) -> LlavaNextProcessor:
    """A real LlavaNextProcessor (PIL image processor, any-resolution tiles)."""
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
        image_grid_pinpoints=_grid_pinpoints(spec))
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                              patch_size=spec.patch_size,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=tokenizer.chat_template, image_token=IMAGE_TOKEN)


def build_tiny_llava_next(tokenizer: PreTrainedTokenizerFast, spec: TinyLlavaSpec = TinyLlavaSpec(),
                          seed: int = 0,
                          attn_implementation: str = "sdpa") -> LlavaNextForConditionalGeneration:
    """A randomly initialised LlavaNextForConditionalGeneration, deterministic under `seed`."""
    base = build_tiny_llava(tokenizer, spec, seed=seed).config
    config = LlavaNextConfig(
        vision_config=base.vision_config, text_config=base.text_config,
        image_token_id=base.image_token_id, image_grid_pinpoints=_grid_pinpoints(spec),
        vision_feature_select_strategy="default", vision_feature_layer=-2, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config)
    model.set_attn_implementation(attn_implementation)
    return model.eval()
