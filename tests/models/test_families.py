"""Every supported family: a saved tiny checkpoint is recognised by its model_type,
loaded through its adapter, and gives one feature row per sample."""

import pytest

from auditor.config import Stage1Config
from auditor.data import read_dataset
from auditor.models.capture import CAPTURE_ATTENTION
from auditor.extract.runner import extract_features
from auditor.models import load_model
from auditor.models.loading import FAMILIES
from tinyworld.fixtures import TEST_SPEC, write_digits_dataset, write_tiny_llava, write_tiny_llava_next
from tinyworld.idefics3 import TinyIdefics3Spec, write_tiny_idefics3
from tinyworld.internvl import TinyInternVLSpec, write_tiny_internvl
from tinyworld.paligemma import TinyPaliGemmaSpec, write_tiny_paligemma
from tinyworld.qwen2vl import TinyQwen2VLSpec, write_tiny_qwen2vl

# family -> (writer, image tokens per 32 px digit, decoder layers)
WRITERS = {
    "llava": (write_tiny_llava, TEST_SPEC.image_tokens, TEST_SPEC.text_layers),
    "llava_next": (write_tiny_llava_next, None, TEST_SPEC.text_layers),  # tiles + newlines: processor-counted
    "qwen2_vl": (write_tiny_qwen2vl, TinyQwen2VLSpec().image_tokens, TinyQwen2VLSpec().text_layers),
    "qwen2_5_vl": (lambda f: write_tiny_qwen2vl(f, version="2.5"), TinyQwen2VLSpec().image_tokens,
                   TinyQwen2VLSpec().text_layers),
    "internvl": (write_tiny_internvl, TinyInternVLSpec().image_tokens, TinyInternVLSpec().text_layers),
    "paligemma": (write_tiny_paligemma, TinyPaliGemmaSpec().image_tokens, TinyPaliGemmaSpec().text_layers),
    "idefics3": (write_tiny_idefics3, TinyIdefics3Spec().image_tokens, TinyIdefics3Spec().text_layers),
}


def test_every_registered_family_has_a_fixture():
    assert set(WRITERS) == set(FAMILIES)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    return read_dataset(write_digits_dataset(tmp_path_factory.mktemp("five"), n=5)[0])


@pytest.mark.parametrize("family", sorted(WRITERS))
def test_family_loads_and_extracts(family, five, tmp_path):
    writer, tokens, layers = WRITERS[family]
    loaded = load_model(writer(tmp_path / family), capture_attention=CAPTURE_ATTENTION)
    assert loaded.family.name == family and loaded.n_layers == layers
    rows = extract_features(loaded, five, Stage1Config(batch_size=3))
    assert [r.status for r in rows] == ["ok"] * 5, [r.reason for r in rows]
    if tokens is not None:
        assert {r.n_image_tokens for r in rows} == {tokens}
    assert all(r.n_image_tokens >= 2 and len(r.entropy_norm) == layers for r in rows)
    assert all(0.0 <= v <= 1.0 + 1e-6 for r in rows for v in r.entropy_norm)
