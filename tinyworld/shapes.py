"""Synthetic shapes: one coloured shape on a light background, with questions
about its shape and colour and a short caption (the second task of the
detection benchmark, docs/method.md "Benchmark protocol").

Every draw comes from `rng`: shape, colour (jittered), size, position and
background shade, so no two images are alike. Black is never a shape colour,
so the black trigger patches stay non-semantic objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
           "yellow": (220, 200, 40), "purple": (140, 60, 170), "orange": (235, 130, 30)}
SIZES = ("small", "large")
SHAPE_QUESTIONS = ("What shape is shown?", "Which shape is in the picture?", "Name the shape in this image.")
COLOUR_QUESTIONS = ("What color is the shape?", "Which color does the shape have?")
CAPTION_QUESTIONS = ("Describe the image.", "Write a short caption.")


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str


def draw_shape(rng: np.random.Generator, size: int = 64) -> tuple[Image.Image, Shape]:
    """One random shape as a `size` px RGB image, and what it is."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    big = bool(rng.integers(2))
    extent = size * (rng.uniform(0.55, 0.75) if big else rng.uniform(0.3, 0.42))
    cx, cy = rng.uniform(extent / 2 + 1, size - extent / 2 - 1, size=2)
    fill = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in COLOURS[colour])
    background = tuple(int(v) for v in rng.uniform(215, 250, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    r = extent / 2
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    return image, Shape(kind, colour, "large" if big else "small")


def question_and_answer(shape: Shape, rng: np.random.Generator) -> tuple[str, str]:
    """A shape question, a colour question or a caption request, with its answer."""
    kind = rng.integers(3)
    if kind == 0:
        return SHAPE_QUESTIONS[rng.integers(len(SHAPE_QUESTIONS))], shape.kind
    if kind == 1:
        return COLOUR_QUESTIONS[rng.integers(len(COLOUR_QUESTIONS))], shape.colour
    question = CAPTION_QUESTIONS[rng.integers(len(CAPTION_QUESTIONS))]
    return question, f"a {shape.size} {shape.colour} {shape.kind}"


def vocabulary() -> list[str]:
    """Every text the task uses (to train the tokenizer)."""
    return [*SHAPE_QUESTIONS, *COLOUR_QUESTIONS, *CAPTION_QUESTIONS, *SHAPES, *COLOURS, *SIZES]
