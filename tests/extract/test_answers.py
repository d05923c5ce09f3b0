"""The answer turn scored in stage 1's pass: the attention features do not
move (1e-6) when it is appended, for every family and both padding sides, and
its NLL is what the model's own loss says."""

import numpy as np
import pytest
import torch

from auditor.extract.answers import answer_ids, append_answers, token_nll
from auditor.extract.runner import sample_rows
from auditor.models import load_model
from auditor.models.capture import CAPTURE_ATTENTION
from tinyworld.digits import load_digit_arrays, render_digit
from tinyworld.fixtures import write_tiny_llava, write_tiny_llava_next
from tinyworld.idefics3 import write_tiny_idefics3
from tinyworld.internvl import write_tiny_internvl
from tinyworld.paligemma import write_tiny_paligemma
from tinyworld.qwen2vl import write_tiny_qwen2vl

WRITERS = {
    "llava": write_tiny_llava,
    "llava_next": write_tiny_llava_next,
    "qwen2_vl": write_tiny_qwen2vl,
    "qwen2_5_vl": lambda f: write_tiny_qwen2vl(f, version="2.5"),
    "internvl": write_tiny_internvl,
    "paligemma": write_tiny_paligemma,
    "idefics3": write_tiny_idefics3,
}
PROMPTS = ["What digit is shown?", "Name the digit in this picture please, the one in the image.",
           "Which digit?"]
# different lengths, an empty one (no answer turn) and one that spells the image token
ANSWERS = ["seven", "", "the digit is three <image>"]


def _images(n, size=32):
    x, _ = load_digit_arrays()
    rng = np.random.default_rng(0)
    return [render_digit(x[i], rng, size=size) for i in range(n)]


@pytest.fixture(scope="module", params=sorted(WRITERS))
def loaded(request, tmp_path_factory):
    folder = WRITERS[request.param](tmp_path_factory.mktemp(request.param) / "model")
    return load_model(folder, capture_attention=CAPTURE_ATTENTION)


@pytest.mark.parametrize("side", ["left", "right"])
def test_the_answer_leaves_the_attention_features_unchanged(loaded, side):
    loaded.processor.tokenizer.padding_side = side
    images = _images(3)
    plain = sample_rows(loaded, images, PROMPTS)
    scored = sample_rows(loaded, images, PROMPTS, ANSWERS)
    for a, b in zip(plain, scored):
        assert a.image_rows.shape == b.image_rows.shape
        np.testing.assert_allclose(b.image_rows, a.image_rows, atol=1e-6, rtol=0)
        np.testing.assert_allclose(b.mass, a.mass, atol=1e-6, rtol=0)
    assert [c.answer is None for c in scored] == [False, True, False]
    assert scored[1].answer_missing == "no answer turn" and scored[0].answer_missing is None
    assert all(c.answer is None and c.answer_missing.startswith("not scored") for c in plain)
    assert scored[2].answer.n_tokens > scored[0].answer.n_tokens >= 1


def test_an_answer_that_spells_the_image_token_is_plain_text(loaded):
    tok, image_token = loaded.processor.tokenizer, loaded.config.image_token_id
    prefix = (loaded.family.chat_texts(loaded.processor, ["Which digit?"])[0]
              if loaded.family.uses_chat_template else None)
    spelled = tok.convert_ids_to_tokens(image_token)
    ids = answer_ids(tok, [prefix], [f"look: {spelled} here"], set(tok.all_special_ids) | {image_token})[0]
    assert ids and image_token not in ids


def test_the_nll_is_the_models_own_loss(tiny_model):
    """Mean token NLL of the answer = the model's cross-entropy loss with the
    prompt masked out (labels -100), computed by transformers itself."""
    loaded = load_model(tiny_model, capture_attention=CAPTURE_ATTENTION)
    family, proc = loaded.family, loaded.processor
    images, prompts, answers = _images(2), PROMPTS[:2], ["seven", "three four"]
    scored = sample_rows(loaded, images, prompts, answers)
    for j in range(2):
        batch = family.build_batch(proc, images[j:j + 1], prompts[j:j + 1])
        ids = answer_ids(proc.tokenizer, family.chat_texts(proc, prompts[j:j + 1]), answers[j:j + 1],
                         set())[0]
        full, _, targets, _ = append_answers(batch, [[(ids, 0)]], proc.tokenizer.pad_token_id)
        with torch.inference_mode():
            loss = loaded.model(**full, labels=targets, use_cache=False).loss
        assert scored[j].answer.nll == pytest.approx(float(loss), abs=1e-5)
        assert scored[j].answer.n_tokens == len(ids)


def test_token_nll_is_nan_off_the_answer():
    logits = torch.zeros(1, 3, 4)  # uniform: every token costs ln 4
    targets = torch.tensor([[-100, -100, -100, 2, -100]])
    nll = token_nll(logits, targets)  # positions 3 and 4 predicted from logits 0 and 1
    assert nll.shape == (1, 2)
    assert nll[0, 0] == pytest.approx(np.log(4)) and np.isnan(nll[0, 1])


LATER = [(("And its colour?", "red"), ("Sure?", "yes it is")), (), (("Why?", ""),)]


def test_later_turns_leave_the_attention_and_the_first_answer_unchanged(loaded):
    """Every answer turn is scored in the one pass; appending the later turns
    moves neither the captured rows nor the first answer's score."""
    images = _images(3)
    one = sample_rows(loaded, images, PROMPTS, ANSWERS)
    many = sample_rows(loaded, images, PROMPTS, ANSWERS, later=LATER)
    for a, b in zip(one, many):
        np.testing.assert_allclose(b.image_rows, a.image_rows, atol=1e-6, rtol=0)
        assert (a.answer is None) == (b.answer is None)
        if a.answer is not None:
            assert b.answer.nll == pytest.approx(a.answer.nll, abs=1e-5)
    if not loaded.family.uses_chat_template:  # no template to place a later turn in: said, not guessed
        assert many[0].later == (None, None) and "no chat template" in many[0].later_missing
        return
    assert [len(c.later) for c in many] == [2, 0, 1] and many[0].later_missing is None
    assert many[0].later[1].n_tokens > many[0].later[0].n_tokens >= 1
    assert many[2].later == (None,)  # an empty later answer has nothing to score


@pytest.mark.parametrize("name", ["llava", "llava_next", "idefics3"])  # their processors tokenise a text
def test_the_conversation_is_the_token_sequence_the_processor_makes_of_it(name, tmp_path):
    """Teacher forced as training saw it: the ids of prompt, answers and the
    template's text between them are the processor's own for the whole
    conversation rendered by the chat template."""
    from auditor.extract.runner import AnswerBounds, conversation_tails

    loaded = load_model(WRITERS[name](tmp_path / "model"), capture_attention=CAPTURE_ATTENTION)
    family, proc = loaded.family, loaded.processor
    image, prompt, turns = _images(1), "What digit?", LATER[0]
    batch = family.build_batch(proc, image, [prompt])
    tail = conversation_tails(loaded, batch, [prompt], ["seven"], [turns], AnswerBounds())[0]
    ours = append_answers(batch, [tail.segments], 0)[0]["input_ids"][0].tolist()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
                {"role": "assistant", "content": [{"type": "text", "text": "seven"}]}]
    for user, answer in turns:
        messages += [{"role": "user", "content": [{"type": "text", "text": user}]},
                     {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    text = proc.apply_chat_template(messages, tokenize=False)
    theirs = proc(text=[text], images=[image] if name == "idefics3" else image, return_tensors="pt")
    assert theirs["input_ids"][0].tolist()[:len(ours)] == ours


def test_a_48k_character_answer_is_cut_to_the_context_and_counted(tiny_model, tmp_path):
    """Each answer turn is cut to --max-answer-tokens, by default to what fits the
    context after the prompt, and the cut is counted (uncut, a 48k-character
    answer took stage 1 from 40 s to over 3.5 min and 3.4 GB on 70 records)."""
    from auditor.config import Stage1Config
    from auditor.data import Sample
    from auditor.extract.runner import shard_features

    loaded = load_model(tiny_model, capture_attention=CAPTURE_ATTENTION)
    _images(1)[0].save(tmp_path / "a.png")
    long = " ".join(["seven"] * 8000)  # 48k characters
    samples = [Sample(0, "a", str(tmp_path / "a.png"), "What digit?", long),
               Sample(1, "b", str(tmp_path / "a.png"), "What digit?", "seven",
                      later=(("Again?", long), ("Once more?", "seven")))]
    context = loaded.config.get_text_config().max_position_embeddings
    rows = shard_features(loaded, samples, Stage1Config())
    assert rows[0].answers_truncated == 1 and rows[0].answer_tokens < context
    assert rows[1].answers_truncated == 1 and rows[1].later_tokens[0] < context
    assert rows[1].later_tokens[1] is None and "beyond the model's context" in rows[1].later_missing
    capped = shard_features(loaded, samples, Stage1Config(max_answer_tokens=5))
    assert capped[0].answer_tokens == 5 and capped[1].later_tokens == (5, 1)
    assert capped[1].answers_truncated == 1 and capped[1].later_missing is None


def test_bound_tail_cuts_each_turn_and_keeps_the_tail_in_the_room():
    from auditor.extract.answers import GLUE, bound_tail

    tail = bound_tail([1] * 6, [([9, 9], [2] * 4), ([9], [3] * 3)], max_answer_tokens=3, room=10)
    assert tail.segments == (([1] * 3, 0), ([9, 9], GLUE), ([2] * 3, 1), ([9], GLUE), ([3], 2))
    assert tail.truncated == 3 and tail.later_missing is None
    tail = bound_tail([1] * 6, [([9, 9], [2] * 4)], max_answer_tokens=None, room=7)
    assert tail.segments == (([1] * 6, 0),) and "1 later answer turn beyond" in tail.later_missing
    assert bound_tail([1] * 6, [], None, None).segments == (([1] * 6, 0),)
