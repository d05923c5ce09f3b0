"""A LLaVA-family model on the pretrained SmolLM2: a small CLIP tower (trained
here), a 2-layer MLP projector (LLaVA-1.5's) and SmolLM2-135M-Instruct as the
decoder, with the LM's own tokenizer and chat template (an image token added)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, LlamaForCausalLM,
                          LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

IMAGE_TOKEN = "<image>"

# SmolLM2-135M-Instruct's own template (its default system turn included),
# extended as SmolVLM's is to messages whose content is a list of parts: an
# image part writes the image token, which the processor expands.
SMOL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class SmolLlavaSpec:
    """The vision side (the decoder is SmolLM2's). 64 px images, 16 px patches
    -> 16 image tokens: a sequence of about 60 tokens with the template, which
    keeps a CPU fine-tune step near 5 s (batch 16)."""

    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_processor(tokenizer, spec: SmolLlavaSpec) -> LlavaProcessor:
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": spec.image_size},
                                            crop_size={"height": spec.image_size, "width": spec.image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=spec.patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=SMOL_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def smol_tokenizer(lm_dir: Path):
    """The LM's tokenizer with the image token added and the chat template above."""
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = SMOL_CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def build_smol_llava(lm_dir: Path, spec: SmolLlavaSpec = SmolLlavaSpec(), seed: int = 0,
                     attn_implementation: str = "sdpa"
                     ) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """LlavaForConditionalGeneration whose decoder carries the pretrained
    weights in `lm_dir` (tinyworld.smol.lm.converted_lm); vision tower and
    projector randomly initialised under `seed`. The image token's embedding
    row starts at the mean of the others (the output embedding is tied)."""
    tokenizer = smol_tokenizer(lm_dir)
    lm = LlamaForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    text = lm.config.to_dict()
    text["vocab_size"] = len(tokenizer)
    vision = CLIPVisionConfig(
        hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
        image_size=spec.image_size, patch_size=spec.patch_size, projection_dim=spec.vision_hidden)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         image_seq_length=spec.image_tokens, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    weights = lm.model.state_dict()
    old = weights["embed_tokens.weight"]
    weights["embed_tokens.weight"] = torch.cat([old, old.mean(0, keepdim=True)])
    model.model.language_model.load_state_dict(weights, strict=True)
    model.tie_weights()
    model.set_attn_implementation(attn_implementation)
    return model.eval(), build_processor(tokenizer, spec)
