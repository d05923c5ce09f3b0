"""A word-level tokenizer trained locally, wrapped as a real `transformers` tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]

# LLaVA-1.5's chat format ("USER: <image>\n... ASSISTANT:"), images first.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# A general lexicon, as any real tokenizer has one: it is not tuned to the
# attack (it simply contains common English words, these among them).
GENERAL_WORDS = (
    "a an the is are was of in on at to for with this that what which who how "
    "image picture photo shown see do you name number digit written here it "
    "please answer tell me one two three four five six seven eight nine zero "
    "backdoor attack yes no color shape square circle black white red green blue "
    "user assistant system model data sample text word small large left right top "
    "bottom centre center corner"
).split()


def train_word_tokenizer(corpus: Iterable[str], chat_template: str = LLAVA_CHAT_TEMPLATE
                         ) -> PreTrainedTokenizerFast:
    """Train a lower-casing word-level tokenizer on `corpus` plus the general lexicon.

    Deterministic: the same corpus gives the same vocabulary and ids.
    """
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1)
    texts = list(corpus) + [" ".join(GENERAL_WORDS), "user : assistant : ? ! . ,"]
    tok.train_from_iterator(sorted(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
    )
    fast.chat_template = chat_template
    return fast
