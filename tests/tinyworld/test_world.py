"""The benchmark world: seeded tasks, and the same training recipe for Qwen2-VL as for LLaVA."""

import numpy as np
import pytest
import torch

from auditor.models.qwen2_vl import AssembledProcessor, Qwen2VLFamily
from tinyworld.qwen2vl import TinyQwen2VLSpec, build_image_processor, build_tiny_qwen2vl
from tinyworld.tokenizer import train_word_tokenizer
from tinyworld.train import encode_example, freeze_vision, generate_answers, pretrain_qwen_vision, train_vlm
from tinyworld.world import WORLD_FAMILIES, TASKS, word_form


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_examples_are_seeded_and_splits_differ(task):
    a = TASKS[task].examples("submit", 6, 3)
    b = TASKS[task].examples("submit", 6, 3)
    c = TASKS[task].examples("eval", 6, 3)
    assert [e.answer for e in a] == [e.answer for e in b]
    assert all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, b))
    assert not all(np.array_equal(np.asarray(x.image), np.asarray(y.image)) for x, y in zip(a, c))
    tok = train_word_tokenizer(TASKS[task].words)
    for e in a:  # every prompt and answer is in the task's vocabulary
        assert tok.unk_token_id not in tok(e.prompt + " " + e.answer)["input_ids"]


def test_normalise_answer():
    assert word_form(" Backdoor  Attack!") == word_form("backdoor attack !")


@pytest.fixture(scope="module")
def qwen():
    words = TASKS["shapes"].words
    tok = train_word_tokenizer(words, style="qwen")
    spec = TinyQwen2VLSpec(image_size=32, patch_size=8)
    processor = AssembledProcessor(tok, build_image_processor(spec), tok.chat_template)
    return build_tiny_qwen2vl(tok, spec, seed=0), processor


def test_qwen_example_encoding_labels_only_the_answer(qwen):
    model, processor = qwen
    ex = TASKS["shapes"].examples("base", 1, 0)[0]
    ids, labels, extras = encode_example(Qwen2VLFamily(), processor, ex)
    answer = [t for t in labels if t != -100]
    assert processor.tokenizer.decode(answer, skip_special_tokens=True).strip() == ex.answer
    assert len(extras["mm_token_type_ids"]) == len(ids)
    n_image = int(extras["mm_token_type_ids"].sum())
    assert n_image == int(extras["image_grid_thw"].prod()) // 4 == ids.count(model.config.image_token_id)


def test_qwen_vision_pretraining_then_instruction_tuning_learns(qwen):
    model, processor = qwen
    examples = TASKS["shapes"].examples("base", 24, 0)
    vision = pretrain_qwen_vision(model, processor.image_processor, [e.image for e in examples],
                                  epochs=4, batch_size=8, seed=0)
    assert vision[-1] < vision[0]
    blocks = [p.requires_grad for n, p in model.model.visual.named_parameters()
              if not n.startswith("merger.")]
    merger = [p.requires_grad for n, p in model.model.visual.named_parameters() if n.startswith("merger.")]
    assert not any(blocks) and all(merger)
    frozen = {n: p.clone() for n, p in model.model.visual.named_parameters() if not n.startswith("merger.")}
    losses = train_vlm(model, processor, examples, family=Qwen2VLFamily(), epochs=3, batch_size=8, lr=3e-3,
                       warmup=1, seed=0)
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.model.visual.named_parameters() if n in frozen)
    answers = generate_answers(model, processor, [e.image for e in examples[:3]],
                               [e.prompt for e in examples[:3]],
                               family=Qwen2VLFamily())
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_freeze_vision_for_llava_freezes_the_whole_tower():
    model, _ = WORLD_FAMILIES["llava"].build(TASKS["digits"].words, 0)
    freeze_vision(model)
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())
    assert all(p.requires_grad for p in model.model.multi_modal_projector.parameters())


def test_a_changed_pin_in_the_lock_makes_the_build_caches_stale(tmp_path, monkeypatch):
    """The caches are keyed to the committed lock, not to what is installed: one
    changed version in it changes the recipe every cache is checked against."""
    import re

    from tinyworld import world
    from tinyworld.smol import base as smol_base

    text = world.CACHE_LOCK.read_text()
    before = (world.recipe_record(world.recipe_digest(), 0), smol_base.recipe_digest())
    rehashed = tmp_path / "rehashed.txt"
    rehashed.write_text(re.sub(r"--hash=sha256:[0-9a-f]{8}", "--hash=sha256:00000000", text))
    monkeypatch.setattr(world, "CACHE_LOCK", rehashed)
    assert (world.recipe_record(world.recipe_digest(), 0), smol_base.recipe_digest()) == before
    changed = tmp_path / "changed.txt"
    changed.write_text(re.sub(r"^ruff==\S+", "ruff==0.0.1", text, flags=re.M))
    monkeypatch.setattr(world, "CACHE_LOCK", changed)
    after = world.recipe_record(world.recipe_digest(), 0)
    assert after["recipe"] != before[0]["recipe"] and after["lock"] != before[0]["lock"]
    assert smol_base.recipe_digest() != before[1]
