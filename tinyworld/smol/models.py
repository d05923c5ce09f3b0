"""VLMs on the pretrained SmolLM2-135M-Instruct, with the LM's own tokenizer and
chat template (image tokens added):

- LLaVA: a small CLIP tower (trained here), LLaVA-1.5's 2-layer MLP projector;
- Idefics3 (SmolVLM's own architecture): a small SigLIP-style tower, pixel
  shuffle by 4 as SmolVLM's, and a linear connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPVisionConfig, Idefics3Config,
                          Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor,
                          LlamaForCausalLM, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor)

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


def smol_tokenizer(lm_dir: Path, image_tokens: tuple[str, ...] = (IMAGE_TOKEN,)):
    """The LM's tokenizer with `image_tokens` added and the chat template above."""
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": list(image_tokens)})
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
    _load_lm(model, model.model.language_model, lm, len(tokenizer))
    model.set_attn_implementation(attn_implementation)
    return model.eval(), build_processor(tokenizer, spec)


def _load_lm(model, decoder, lm: LlamaForCausalLM, vocab: int) -> None:
    """The pretrained decoder's weights into `decoder`; each added token's
    embedding row starts at the mean of the LM's rows (the output embedding is tied)."""
    weights = lm.model.state_dict()
    old = weights["embed_tokens.weight"]
    weights["embed_tokens.weight"] = torch.cat([old, old.mean(0, keepdim=True).expand(vocab - len(old), -1)])
    decoder.load_state_dict(weights, strict=True)
    model.tie_weights()


# What SmolVLM's tokenizer adds for its images (Idefics3Processor writes them).
IDEFICS3_TOKENS = ("<fake_token_around_image>", IMAGE_TOKEN, "<global-img>", "<end_of_utterance>")


@dataclass(frozen=True)
class SmolIdefics3Spec(SmolLlavaSpec):
    """The vision side of an Idefics3 on SmolLM2. SmolVLM's pixel shuffle by 4:
    64 px images, 4 px patches -> 256 patch features -> 16 image tokens (as
    the LLaVA's), one tile (no splitting)."""

    patch_size: int = 4
    scale_factor: int = 4

    @property
    def image_tokens(self) -> int:
        return super().image_tokens // self.scale_factor ** 2


def build_smol_idefics3(lm_dir: Path, spec: SmolIdefics3Spec = SmolIdefics3Spec(), seed: int = 0,
                        attn_implementation: str = "sdpa"
                        ) -> tuple[Idefics3ForConditionalGeneration, Idefics3Processor]:
    """Idefics3ForConditionalGeneration (SmolVLM's class) whose decoder carries
    the pretrained weights in `lm_dir`; tower and connector randomly
    initialised under `seed`; the LM's chat template, its image part written
    as `<image>`, which the processor expands into SmolVLM's image tags."""
    tokenizer = smol_tokenizer(lm_dir, IDEFICS3_TOKENS)
    lm = LlamaForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    text = lm.config.to_dict()
    text["vocab_size"] = len(tokenizer)
    config = Idefics3Config(
        vision_config=dict(hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                           num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                           image_size=spec.image_size, patch_size=spec.patch_size),
        text_config=text, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=spec.scale_factor, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    _load_lm(model, model.model.text_model, lm, len(tokenizer))
    model.set_attn_implementation(attn_implementation)
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": spec.image_size},
                                                max_image_size={"longest_edge": spec.image_size},
                                                do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=spec.image_tokens, chat_template=SMOL_CHAT_TEMPLATE)
    return model.eval(), processor
