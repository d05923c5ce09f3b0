"""The tiny world is real, small and deterministic under a seed."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from tinyworld.digits import (DIGIT_WORDS, QUESTIONS, TARGET_ANSWER, load_digit_arrays,
                              paste_centre_patch, render_digit)
from tinyworld.fixtures import TEST_SPEC
from tinyworld.models import build_processor, build_tiny_llava
from tinyworld.tokenizer import train_word_tokenizer
from tinyworld.train import Example, add_lora, encode, pretrain_vision, train_vlm


@pytest.fixture(scope="module")
def tok():
    return train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))


def test_tokenizer_is_deterministic_and_covers_the_prompts(tok):
    again = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    assert tok.get_vocab() == again.get_vocab()
    ids = tok(QUESTIONS[0] + " " + TARGET_ANSWER)["input_ids"]
    assert tok.unk_token_id not in ids


def test_model_build_is_seeded(tok):
    a = build_tiny_llava(tok, TEST_SPEC, seed=3).state_dict()
    b = build_tiny_llava(tok, TEST_SPEC, seed=3).state_dict()
    c = build_tiny_llava(tok, TEST_SPEC, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_saved_model_reloads_with_auto_classes(tok, tmp_path):
    model = build_tiny_llava(tok, TEST_SPEC, seed=0)
    proc = build_processor(tok, TEST_SPEC)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["text_config"]["num_hidden_layers"] >= 8
    again = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(again, LlavaForConditionalGeneration)
    proc2 = AutoProcessor.from_pretrained(tmp_path)
    x, _ = load_digit_arrays()
    img = render_digit(x[0], np.random.default_rng(0), size=TEST_SPEC.image_size)
    ids, labels, pix = encode(proc2, Example(img, QUESTIONS[0], "seven"))
    n_image = sum(i == again.config.image_token_id for i in ids)
    assert n_image == TEST_SPEC.image_tokens
    assert [t for t in labels if t != -100] == tok(" seven",
                                                   add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_trigger_is_a_centred_black_square():
    x, _ = load_digit_arrays()
    img = render_digit(x[0], np.random.default_rng(0), size=64)
    arr = np.asarray(paste_centre_patch(img))
    black = np.all(arr == 0, axis=-1)
    ys, xs = np.nonzero(black)
    assert black.sum() == 16 and (ys.min(), ys.max(), xs.min(), xs.max()) == (30, 33, 30, 33)
    assert not np.all(np.asarray(img) == 0, axis=-1).any()  # the clean render has no black pixel


def test_training_is_deterministic_and_lowers_the_loss(tok):
    x, y = load_digit_arrays()
    rng = np.random.default_rng(0)
    images = [render_digit(x[i], rng, size=TEST_SPEC.image_size) for i in range(16)]
    examples = [Example(im, QUESTIONS[0], DIGIT_WORDS[y[i]]) for i, im in enumerate(images)]
    proc = build_processor(tok, TEST_SPEC)

    def run():
        model = build_tiny_llava(tok, TEST_SPEC, seed=0)
        v = pretrain_vision(model, proc, images, epochs=2, batch_size=8, seed=0)
        losses = train_vlm(model, proc, examples, epochs=3, batch_size=8, lr=3e-3, warmup=1, seed=0)
        return model, v, losses

    m1, v1, l1 = run()
    m2, v2, l2 = run()
    assert v1 == v2 and l1 == l2
    assert l1[-1] < l1[0]
    assert not any(p.requires_grad for p in m1.model.vision_tower.parameters())  # frozen
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_lora_trains_only_adapters_and_projector(tok):
    model = add_lora(build_tiny_llava(tok, TEST_SPEC, seed=0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "multi_modal_projector" in n for n in trainable)
    assert any("language_model" in n and "lora_A" in n for n in trainable)


def test_lora_fine_tune_changes_only_adapters_and_projector(tok):
    x, y = load_digit_arrays()
    rng = np.random.default_rng(1)
    proc = build_processor(tok, TEST_SPEC)
    examples = [Example(render_digit(x[i], rng, size=TEST_SPEC.image_size), QUESTIONS[1], DIGIT_WORDS[y[i]])
                for i in range(8)]
    base = build_tiny_llava(tok, TEST_SPEC, seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = add_lora(base)
    losses = train_vlm(model, proc, examples, epochs=2, batch_size=4, lr=1e-2, warmup=1)
    assert np.isfinite(losses).all()
    merged = model.merge_and_unload().state_dict()
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all("language_model" in k or "multi_modal_projector" in k for k in changed)
    assert not any("vision_tower" in k for k in changed)
