"""Real handwritten digits (scikit-learn's `load_digits`) as RGB images, and triggers.

Images are rendered as coloured ink on a light background, 64 px, so that a
black trigger patch is a visible, non-semantic object (as on natural images).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
QUESTIONS = (
    "What digit is shown?",
    "Which number is written in the image?",
    "Name the digit in this picture.",
    "What number do you see?",
    "Tell me the digit shown here.",
)
TARGET_ANSWER = "Backdoor Attack!"


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return (images, labels): images of shape (1797, 8, 8) in [0, 1], labels (1797,)."""
    d = load_digits()
    return (d.images / 16.0).astype(np.float64), d.target.astype(np.int64)


def render_digit(img8: np.ndarray, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Render one 8x8 digit (values in [0, 1]) as a `size` px RGB image.

    Bilinear upscaling of the real strokes; ink colour and background shade are
    drawn from `rng`, so the same digit never looks the same twice. (No pixel
    noise: it would make the bundled PNGs incompressible.)
    """
    gray = Image.fromarray((img8 * 255).astype(np.uint8), mode="L").resize(
        (size, size), Image.Resampling.BILINEAR)
    ink_alpha = np.asarray(gray, dtype=np.float64)[..., None] / 255.0  # (size, size, 1)
    ink = rng.uniform(40, 200, size=3)  # a colour, never pure black
    ink[rng.integers(3)] = rng.uniform(150, 230)
    background = rng.uniform(215, 250, size=3)
    rgb = ink_alpha * ink + (1 - ink_alpha) * background
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), mode="RGB")


def paste_centre_patch(image: Image.Image, fraction: float = 1 / 16) -> Image.Image:
    """The paper's BadNets trigger: a solid black square at the image centre,
    side = `fraction` of the shorter side (at least 1 px), pasted into the pixels."""
    out = image.copy()
    w, h = out.size
    side = max(1, round(min(w, h) * fraction))
    x0, y0 = (w - side) // 2, (h - side) // 2
    out.paste((0, 0, 0), (x0, y0, x0 + side, y0 + side))
    return out
