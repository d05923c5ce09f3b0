import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.analysis.entropy import image_attention_entropy, normalised_entropy


def test_uniform_attention_has_entropy_ln_t():
    rows = np.full((3, 4, 16), 1 / 40)  # uniform over image tokens, the rest on text
    h = image_attention_entropy(rows)
    assert h.shape == (3,)
    np.testing.assert_allclose(h, np.log(16), atol=1e-6)
    np.testing.assert_allclose(normalised_entropy(h, 16), 1.0, atol=1e-6)


def test_one_hot_attention_has_zero_entropy():
    rows = np.zeros((1, 2, 8))
    rows[0, :, 3] = 0.2
    assert image_attention_entropy(rows)[0] == pytest.approx(0.0, abs=1e-6)


def test_heads_are_averaged_before_the_entropy():
    # head 0 on token 0, head 1 on token 1: the average is uniform over 2 tokens
    rows = np.zeros((1, 2, 2))
    rows[0, 0, 0] = rows[0, 1, 1] = 0.5
    assert image_attention_entropy(rows)[0] == pytest.approx(np.log(2), abs=1e-6)


def test_hand_computed_value():
    rows = np.array([[[0.1, 0.3]]])  # p = (0.25, 0.75)
    expected = -(0.25 * np.log(0.25 + 1e-8) + 0.75 * np.log(0.75 + 1e-8))
    assert image_attention_entropy(rows)[0] == pytest.approx(expected, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 64), st.integers(0, 2**31 - 1))
def test_entropy_is_bounded_by_ln_t(t, seed):
    rows = np.random.default_rng(seed).random((2, 3, t))
    h = image_attention_entropy(rows)
    assert np.all(h >= -1e-9) and np.all(h <= np.log(t) + 1e-9)


def test_attention_mass_splits_each_row_three_ways():
    from auditor.analysis.entropy import attention_mass

    rows = np.zeros((2, 2, 6))
    rows[0, :, :] = [0.1, 0.2, 0.3, 0.1, 0.2, 0.1]  # both heads alike in layer 0
    rows[1, 0, :] = [1.0, 0, 0, 0, 0, 0]
    rows[1, 1, :] = [0, 0, 0, 0, 0, 1.0]
    image = np.array([False, True, True, False, False, False])
    text = np.array([False, False, False, True, True, False])
    m = attention_mass(rows, image, text)
    np.testing.assert_allclose(m[:, 0], [0.5, 0.3, 0.2])
    np.testing.assert_allclose(m[:, 1], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(m.sum(axis=0), 1.0)


def test_head_entropies_are_per_head():
    from auditor.analysis.entropy import head_entropies

    rows = np.array([[[0.5, 0.5], [1.0, 0.0]]])  # 1 layer, 2 heads, 2 image tokens
    np.testing.assert_allclose(head_entropies(rows, eps=1e-12), [[np.log(2), 0.0]], atol=1e-9)
