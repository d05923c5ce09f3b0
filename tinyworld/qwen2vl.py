"""Build tiny Qwen2-VL models (Qwen2VLForConditionalGeneration) from configs.

Saved like a real checkpoint that lacks a buildable combined processor:
tokenizer, PIL image processor and chat_template.jinja (no torchvision here,
so Qwen2VLProcessor, whose video half needs it, cannot be built or saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil)

from .digits import DIGIT_WORDS, QUESTIONS
from .spec import TinyVLMSpec
from .tokenizer import train_word_tokenizer


@dataclass(frozen=True)
class TinyQwen2VLSpec(TinyVLMSpec):
    """Images resized to 64 x 64, 8 px patches, 2 x 2 merge -> 16 image tokens."""

    merge_size: int = 2
    max_positions: int = 512

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size // self.merge_size) ** 2


def build_image_processor(spec: TinyQwen2VLSpec) -> Qwen2VLImageProcessorPil:
    pixels = spec.image_size * spec.image_size
    return Qwen2VLImageProcessorPil(patch_size=spec.patch_size, merge_size=spec.merge_size,
                                    temporal_patch_size=2,
                                    size={"shortest_edge": pixels, "longest_edge": pixels})


def build_tiny_qwen2vl(tokenizer: PreTrainedTokenizerFast, spec: TinyQwen2VLSpec = TinyQwen2VLSpec(),
                       seed: int = 0, attn_implementation: str = "sdpa", version: str = "2"):
    """A randomly initialised Qwen2VLForConditionalGeneration (`version` "2") or
    Qwen2_5_VLForConditionalGeneration ("2.5"), deterministic under `seed`."""
    head_dim = spec.text_hidden // spec.text_heads
    half = head_dim // 2  # M-RoPE splits the rotary half into temporal, height, width sections
    section = [half - 2 * (half // 3), half // 3, half // 3]
    ids = tokenizer.convert_tokens_to_ids
    if version == "2":
        config_class, model_class = Qwen2VLConfig, Qwen2VLForConditionalGeneration
        vision = dict(depth=spec.vision_layers, embed_dim=spec.vision_hidden, hidden_size=spec.text_hidden,
                      num_heads=spec.vision_heads, patch_size=spec.patch_size,
                      spatial_merge_size=spec.merge_size, temporal_patch_size=2, in_channels=3)
    else:
        config_class, model_class = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        vision = dict(depth=spec.vision_layers, hidden_size=spec.vision_hidden,
                      out_hidden_size=spec.text_hidden,
                      intermediate_size=2 * spec.vision_hidden, num_heads=spec.vision_heads,
                      patch_size=spec.patch_size, spatial_merge_size=spec.merge_size, temporal_patch_size=2,
                      in_channels=3, window_size=spec.patch_size * spec.merge_size * 2,
                      fullatt_block_indexes=[spec.vision_layers - 1])
    config = config_class(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=spec.text_hidden,
                         intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
                         num_attention_heads=spec.text_heads, num_key_value_heads=spec.text_kv_heads,
                         max_position_embeddings=spec.max_positions,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": section},
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.set_attn_implementation(attn_implementation)
    return model.eval()


def write_tiny_qwen2vl(folder: Path, spec: TinyQwen2VLSpec = TinyQwen2VLSpec(), seed: int = 0,
                       version: str = "2") -> Path:
    """Save an untrained tiny Qwen2-VL (or Qwen2.5-VL, `version` "2.5") with
    tokenizer, image processor and chat template."""
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS), style="qwen")
    model = build_tiny_qwen2vl(tokenizer, spec, seed=seed, version=version)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    build_image_processor(spec).save_pretrained(folder)
    (Path(folder) / "chat_template.jinja").write_text(tokenizer.chat_template)
    return folder
