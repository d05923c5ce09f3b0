"""Synthetic shapes are seeded, drawn as described and never black."""

import numpy as np

from tinyworld import shapes


def test_draw_is_seeded_and_varies():
    a, sa = shapes.draw_shape(np.random.default_rng(1))
    b, sb = shapes.draw_shape(np.random.default_rng(1))
    c, _ = shapes.draw_shape(np.random.default_rng(2))
    assert sa == sb and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_the_shape_is_painted_in_its_colour_and_no_pixel_is_black():
    rng = np.random.default_rng(0)
    for _ in range(50):
        image, shape = shapes.draw_shape(rng)
        px = np.asarray(image, dtype=float).reshape(-1, 3)
        ink = px[px.min(1) < 200]  # the background is 215-250 in every channel
        assert len(ink) > 0.04 * len(px)
        nearest = min(shapes.COLOURS, key=lambda c: np.abs(ink.mean(0) - shapes.COLOURS[c]).sum())
        assert nearest == shape.colour
        assert px.max(1).min() > 60  # black stays reserved for triggers


def test_questions_have_matching_answers():
    rng = np.random.default_rng(0)
    shape = shapes.Shape("triangle", "red", "small")
    seen = {}
    for _ in range(60):
        q, a = shapes.question_and_answer(shape, rng)
        seen[q] = a
    for q in shapes.SHAPE_QUESTIONS:
        assert seen.get(q, "triangle") == "triangle"
    for q in shapes.COLOUR_QUESTIONS:
        assert seen.get(q, "red") == "red"
    assert "a small red triangle" in seen.values()
