"""A word-level tokenizer trained locally, wrapped as a real `transformers` tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]

# LLaVA-1.5's chat format ("USER: <image>\n... ASSISTANT:"), images first.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% "
    "endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' "
    "}}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ "
    "content['text'] + ' ' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% "
    "endif %}"
)

# A general lexicon, as any real tokenizer has one: it is not tuned to the
# attack (it simply contains common English words, these among them).
GENERAL_WORDS = (
    "a an the is are was of in on at to for with this that what which who how image picture photo shown see "
    "do you name number digit written here it please answer tell me one two three four five six seven eight "
    "nine zero backdoor attack yes no color shape square circle black white red green blue user assistant "
    "system model data sample text word small large left right top bottom centre center corner"
).split()


# InternVL: the chat template writes one <IMG_CONTEXT> per image, which the
# processor expands to <img><IMG_CONTEXT>...</img> (as the hub's InternVL-hf
# templates and InternVLProcessor do).
INTERNVL_CHAT_TEMPLATE = LLAVA_CHAT_TEMPLATE.replace("{{ '<image>\n' }}", "{{ '<IMG_CONTEXT>\n' }}")
INTERNVL_SPECIAL_TOKENS = SPECIAL_TOKENS + ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"]

# Idefics3: image tags and the end-of-utterance marker of its chat format.
IDEFICS3_SPECIAL_TOKENS = SPECIAL_TOKENS + ["<fake_token_around_image>", "<global-img>",
                                            "<end_of_utterance>"] + [
    f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
IDEFICS3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:{% for c in message['content'] %}{% if "
    "c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% "
    "endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)

# Qwen2-VL's chat format (ChatML), images as <|vision_start|><|image_pad|><|vision_end|>.
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}{% if "
    "c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif "
    "%}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_word_tokenizer(corpus: Iterable[str], chat_template: str = LLAVA_CHAT_TEMPLATE,
                         style: str = "llava") -> PreTrainedTokenizerFast:
    """Train a lower-casing word-level tokenizer on `corpus` plus the general lexicon,
    with the special tokens of a LLaVA ("llava") or Qwen2-VL ("qwen") checkpoint.

    Deterministic: the same corpus gives the same vocabulary and ids.
    """
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = {"llava": SPECIAL_TOKENS, "qwen": QWEN_SPECIAL_TOKENS, "internvl": INTERNVL_SPECIAL_TOKENS,
                "idefics3": IDEFICS3_SPECIAL_TOKENS}[style]
    trainer = trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1)
    texts = list(corpus) + [" ".join(GENERAL_WORDS), "user : assistant : ? ! . ,"]
    tok.train_from_iterator(sorted(texts), trainer=trainer)
    if style == "idefics3":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
            extra_special_tokens={"image_token": IMAGE_TOKEN, "end_of_utterance_token": "<end_of_utterance>"},
            padding_side="right",
        )
        fast.chat_template = IDEFICS3_CHAT_TEMPLATE
    elif style == "internvl":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
            extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                  "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
            padding_side="right",
        )
        fast.chat_template = INTERNVL_CHAT_TEMPLATE
    elif style == "llava":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
            extra_special_tokens={"image_token": IMAGE_TOKEN},
            padding_side="right",
        )
        fast.chat_template = chat_template
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, pad_token="<|endoftext|>", unk_token="<unk>", eos_token="<|im_end|>",
            extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                  "vision_bos_token": "<|vision_start|>",
                                  "vision_eos_token": "<|vision_end|>"},
            padding_side="right",
        )
        fast.chat_template = QWEN_CHAT_TEMPLATE
    return fast
