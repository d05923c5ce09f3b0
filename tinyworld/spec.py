"""Sizes shared by the tiny test models of the newer families (each adds its own)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyVLMSpec:
    """A 2-layer vision tower and a 6-layer decoder, 64 px images in 8 px patches."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 64
    text_intermediate: int = 128
    text_layers: int = 6
    text_heads: int = 4
    text_kv_heads: int = 2
