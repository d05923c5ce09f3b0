"""What a model-family adapter provides to stage 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image


class ModelFamily(Protocol):
    """One adapter per family: build the prompt, find image tokens and the query row."""

    name: str
    model_types: tuple[str, ...]  # config.json "model_type" values it handles

    def load(self, model_dir: Path, dtype: torch.dtype, attn_implementation: str,
             safetensors: bool = True) -> tuple[torch.nn.Module, Any]:
        """(model in eval mode, processor) from a local folder, no remote code;
        `safetensors=False` (only under --allow-pickle) lets transformers read
        pickle weights through torch's weights-only loader."""

    def decoder_attention_modules(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The language model's self-attention modules, layer 0 first."""

    def build_batch(self, processor: Any, images: list[Image.Image], prompts: list[str]
                    ) -> dict[str, torch.Tensor]:
        """Model inputs for a prefill pass: chat template with the assistant prefix."""

    def image_token_mask(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                         ) -> torch.Tensor:
        """Bool (B, S): True at the positions of image tokens."""


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    processor: Any
    family: ModelFamily
    model_dir: Path
    model_type: str
    n_layers: int
    dtype: str
    attn_implementation: str
    adapter_dir: Path | None = None  # a PEFT adapter merged into the weights
    device: str = "cpu"
