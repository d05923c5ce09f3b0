"""The captured rows equal eager attention's rows (fp32, 1e-5), whatever the padding: for every
family's tiny model and for LLaVA and Idefics3 on the pretrained 30-layer SmolLM2 (tinyworld/smol)."""

import json

import numpy as np
import pytest
import torch

from auditor.analysis.entropy import image_attention_entropy
from auditor.models.capture import CAPTURE_ATTENTION, capturing, last_prompt_position, query_rows
from auditor.models.idefics3 import Idefics3Family
from auditor.models.internvl import InternVLFamily
from auditor.models.llava import LlavaFamily, LlavaNextFamily
from auditor.models.paligemma import PaliGemmaFamily
from auditor.models.qwen2_vl import AssembledProcessor, Qwen2_5_VLFamily, Qwen2VLFamily, load_processor
from tinyworld.digits import DIGIT_WORDS, QUESTIONS, load_digit_arrays, render_digit
from tinyworld.fixtures import TEST_SPEC, write_tiny_llava_next
from tinyworld.idefics3 import write_tiny_idefics3
from tinyworld.internvl import write_tiny_internvl
from tinyworld.models import build_processor, build_tiny_llava
from tinyworld.paligemma import write_tiny_paligemma
from tinyworld.qwen2vl import TinyQwen2VLSpec, write_tiny_qwen2vl
from tinyworld.tokenizer import train_word_tokenizer

PROMPTS = ["What digit is shown?", "Name the digit in this picture.",
           "Tell me the digit shown here please, the one in the image."]


@pytest.fixture(scope="module")
def llava():
    tok = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    return build_tiny_llava(tok, TEST_SPEC, seed=1), build_processor(tok, TEST_SPEC), LlavaFamily()


def _saved(tmp_path_factory, writer, fam):
    """A tiny checkpoint saved and reloaded as a user's is: through the family's loader."""
    model, processor = fam.load(writer(tmp_path_factory.mktemp(fam.name) / "model"), torch.float32, "sdpa")
    return model, processor, fam


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_qwen2vl(f, seed=1), Qwen2VLFamily())


@pytest.fixture(scope="module")
def qwen2_5_vl(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_qwen2vl(f, seed=1, version="2.5"),
                  Qwen2_5_VLFamily())


@pytest.fixture(scope="module")
def llava_next(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_llava_next(f, seed=1), LlavaNextFamily())


@pytest.fixture(scope="module")
def internvl(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_internvl(f, seed=1), InternVLFamily())


@pytest.fixture(scope="module")
def paligemma(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_paligemma(f, seed=1), PaliGemmaFamily())


@pytest.fixture(scope="module")
def idefics3(tmp_path_factory):
    return _saved(tmp_path_factory, lambda f: write_tiny_idefics3(f, seed=1), Idefics3Family())


def _on_smol(folder, fam):
    """A VLM on the pretrained SmolLM2-135M: 30 layers, 9 query / 3 key-value heads."""
    model, processor = fam.load(folder, torch.float32, "sdpa")
    text = model.config.text_config
    assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (30, 9, 3)
    return model, processor, fam


@pytest.fixture(scope="module")
def smol(smol_llava):
    return _on_smol(smol_llava, LlavaFamily())


@pytest.fixture(scope="module")
def smol_idefics3_loaded(smol_idefics3):
    """SmolVLM's architecture on the same LM: pixel shuffle, image tags."""
    return _on_smol(smol_idefics3, Idefics3Family())


FAMILY_FIXTURES = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "internvl", "paligemma", "idefics3",
                   "smol", "smol_idefics3_loaded"]


def _images(n):
    x, _ = load_digit_arrays()
    rng = np.random.default_rng(0)
    return [render_digit(x[i], rng, size=TEST_SPEC.image_size) for i in range(n)]


@pytest.mark.parametrize("family", FAMILY_FIXTURES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_rows_match_eager_output_attentions(request, family, side):
    model, processor, fam = request.getfixturevalue(family)
    processor.tokenizer.padding_side = side
    try:
        batch = fam.build_batch(processor, _images(3), PROMPTS)
    finally:
        processor.tokenizer.padding_side = "right"
    assert batch["attention_mask"].sum(-1).unique().numel() == 3  # padding really present
    q = last_prompt_position(batch["attention_mask"])
    model.set_attn_implementation(CAPTURE_ATTENTION)
    with torch.no_grad(), capturing(fam.decoder_attention_modules(model), q) as cap:
        out = model(**batch, use_cache=False)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = model(**batch, use_cache=False, output_attentions=True)
    b = torch.arange(3)
    assert len(cap.rows) == len(fam.decoder_attention_modules(model))
    assert fam.image_token_mask(model.config, batch).sum(-1).min() >= 2
    for rows, att in zip(cap.rows, ref.attentions):
        torch.testing.assert_close(rows, att[b, :, q].float(), atol=1e-5, rtol=0)
    # the layer outputs are the normal ones (at real tokens; fully masked pad rows differ by kernel),
    # to fp32 round-off of the logits' scale (the 30-layer LM's reach about 30)
    real = batch["attention_mask"].bool()
    scale = max(10.0, ref.logits[real].abs().max().item())
    torch.testing.assert_close(out.logits[real], ref.logits[real], atol=1e-5 * scale, rtol=0)
    # and so are the entropies computed independently from eager
    mask = fam.image_token_mask(model.config, batch)
    for j in range(3):
        mine = image_attention_entropy(torch.stack(cap.rows)[:, j][:, :, mask[j]].numpy())
        theirs = image_attention_entropy(
            torch.stack([a[j, :, q[j]] for a in ref.attentions])[:, :, mask[j]].numpy())
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_qwen2_vl_inputs_are_assembled_without_the_combined_processor(qwen2_vl, tmp_path):
    """No torchvision here: Qwen2VLProcessor cannot be built, so the family
    assembles tokenizer + PIL image processor + chat template, one <|image_pad|>
    per merged patch and M-RoPE's mm_token_type_ids."""
    model, processor, fam = qwen2_vl
    assert isinstance(processor, AssembledProcessor)
    batch = fam.build_batch(processor, _images(2), PROMPTS[:2])
    spec = TinyQwen2VLSpec()
    assert fam.image_token_mask(model.config, batch).sum(-1).tolist() == [spec.image_tokens] * 2
    assert torch.equal(batch["mm_token_type_ids"].bool(), fam.image_token_mask(model.config, batch))
    grid = spec.image_size // spec.patch_size
    assert batch["image_grid_thw"].tolist() == [[1, grid, grid]] * 2
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert text.count("<|vision_start|>") == 1 and "<|im_start|> assistant" in text


def test_a_checkpoint_without_a_chat_template_is_refused(tmp_path):
    folder = write_tiny_qwen2vl(tmp_path / "m")
    (folder / "chat_template.jinja").unlink()
    cfg = folder / "tokenizer_config.json"
    data = json.loads(cfg.read_text())
    data.pop("chat_template", None)
    cfg.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="chat template"):
        load_processor(folder)


def test_last_prompt_position_for_both_paddings():
    m = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 1]])
    assert last_prompt_position(m).tolist() == [2, 3, 3]


def test_query_rows_mask_forms_agree():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=g)
    k = torch.randn(2, 2, 5, 8, generator=g)
    pos = torch.tensor([4, 2])
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))[None, None].expand(2, 1, 5, 5)
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~causal, torch.finfo(torch.float32).min)
    a = query_rows(q, k, None, pos, 8 ** -0.5)
    torch.testing.assert_close(a, query_rows(q, k, causal, pos, 8 ** -0.5))
    torch.testing.assert_close(a, query_rows(q, k, additive, pos, 8 ** -0.5))
    assert a.shape == (2, 4, 5)
    assert torch.all(a[1, :, 3:] == 0)  # no attention to the future
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 4))


def test_internvl_inputs_are_assembled_without_the_combined_processor(internvl):
    from auditor.models.internvl import AssembledInternVLProcessor
    from tinyworld.internvl import TinyInternVLSpec

    model, processor, fam = internvl
    assert isinstance(processor, AssembledInternVLProcessor)
    batch = fam.build_batch(processor, _images(2), PROMPTS[:2])
    assert fam.image_token_mask(model.config, batch).sum(-1).tolist() == [TinyInternVLSpec().image_tokens] * 2
    text = processor.tokenizer.decode(batch["input_ids"][0])
    assert text.count("<img>") == 1 and text.count("</img>") == 1 and "<image>" not in text
