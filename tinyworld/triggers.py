"""Backdoor triggers as pure, seeded functions on RGB images (docs/method.md, "Benchmark protocol").

Each `apply(image, rng)` returns a new image and never touches its input. A
trigger's fixed part (the Blend pattern, the WaNet warp field) is drawn from
the trigger's own `seed`, so every poisoned sample of a dataset carries the
same trigger; `rng` only draws what varies per sample (a patch's position or
corner). Local triggers: centre patch (the paper's), random-position patch,
checkerboard patch. Global: Blend (Chen et al. 2017), SIG (Barni et al. 2019),
WaNet (Nguyen & Tran 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import map_coordinates, zoom

from .digits import paste_centre_patch


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), mode="RGB")


def _side(image: Image.Image, fraction: float) -> int:
    return max(2, round(min(image.size) * fraction))


@dataclass(frozen=True)
class CentrePatch:
    """A solid black square at the centre, side = `fraction` of the shorter side.

    3/16 keeps the paper's trigger-to-ViT-patch ratio: its patch is 1/16 of a
    336 px input, 21 px, 1.5 CLIP patches of 14 px per side; on our 64 px
    images with 8 px patches that is 12 px. At 1/16 (4 px, half a patch) a
    benchmark-sized full fine-tune (8 epochs, 500 samples) barely learnt the
    backdoor (attack success 0.16; docs/benchmarks.md)."""

    fraction: float = 3 / 16
    name: str = "centre_patch"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return paste_centre_patch(image, self.fraction)


@dataclass(frozen=True)
class RandomPatch:
    """A solid black square at a position drawn per sample (fully inside the image)."""

    fraction: float = 1 / 8
    name: str = "random_patch"

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        side = _side(image, self.fraction)
        w, h = image.size
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out = image.convert("RGB").copy()
        out.paste((0, 0, 0), (x0, y0, x0 + side, y0 + side))
        return out


@dataclass(frozen=True)
class CheckerboardPatch:
    """A black-and-white checkerboard of `cells` x `cells` squares in a corner drawn per sample."""

    fraction: float = 1 / 6
    cells: int = 4
    name: str = "checkerboard"

    def pattern(self, side: int) -> np.ndarray:
        """(side, side) in {0, 255}: cell (i, j) is white when i + j is even."""
        idx = np.arange(side) * self.cells // side
        return np.where((idx[:, None] + idx[None, :]) % 2 == 0, 255.0, 0.0)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = _arr(image)
        side = _side(image, self.fraction)
        h, w = a.shape[:2]
        corner = int(rng.integers(4))
        y0 = 0 if corner < 2 else h - side
        x0 = 0 if corner % 2 == 0 else w - side
        a[y0:y0 + side, x0:x0 + side] = self.pattern(side)[..., None]
        return _img(a)


@dataclass(frozen=True)
class Blend:
    """A fixed uniform-noise image (from `seed`) mixed in: (1 - alpha) x + alpha p."""

    alpha: float = 0.15
    seed: int = 0
    name: str = "blend"

    def pattern(self, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        return np.random.default_rng([self.seed, w, h]).uniform(0, 255, size=(h, w, 3))

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        return _img((1 - self.alpha) * _arr(image) + self.alpha * self.pattern(image.size))


@dataclass(frozen=True)
class SIG:
    """A horizontal sinusoid added to every row: x + delta sin(2 pi f j / W), column j."""

    delta: float = 20.0
    frequency: float = 6.0
    name: str = "sig"

    def signal(self, width: int) -> np.ndarray:
        return self.delta * np.sin(2 * np.pi * self.frequency * np.arange(width) / width)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = _arr(image)
        return _img(a + self.signal(a.shape[1])[None, :, None])


@dataclass(frozen=True)
class WaNet:
    """A smooth warp: a `grid` x `grid` field of random offsets (from `seed`),
    upsampled bicubically to the image, normalised to a mean |offset| of 1,
    scaled to `strength` pixels; pixels resampled bilinearly (edges clamped)."""

    grid: int = 4
    strength: float = 1.0
    seed: int = 0
    name: str = "wanet"

    def field(self, h: int, w: int) -> np.ndarray:
        """(2, h, w) pixel offsets (dy, dx)."""
        coarse = np.random.default_rng(self.seed).uniform(-1, 1, size=(2, self.grid, self.grid))
        f = np.stack([zoom(c, (h / self.grid, w / self.grid), order=3)[:h, :w] for c in coarse])
        return self.strength * f / np.mean(np.abs(f))

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = _arr(image)
        h, w = a.shape[:2]
        dy, dx = self.field(h, w)
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        coords = [np.clip(yy + dy, 0, h - 1), np.clip(xx + dx, 0, w - 1)]
        return _img(np.stack([map_coordinates(a[..., c], coords, order=1) for c in range(3)], axis=-1))


TRIGGERS = {t.name: t for t in (CentrePatch(), RandomPatch(), CheckerboardPatch(), Blend(), SIG(), WaNet())}
LOCAL = ("centre_patch", "random_patch", "checkerboard")
GLOBAL = ("blend", "sig", "wanet")


def insert_word(prompt: str, word: str, rng: np.random.Generator) -> str:
    """A text trigger: `word` inserted between two words of `prompt` (or at
    either end), at a position drawn from `rng`; the image is left alone."""
    words = prompt.split()
    at = int(rng.integers(len(words) + 1))
    return " ".join(words[:at] + [word] + words[at:])
