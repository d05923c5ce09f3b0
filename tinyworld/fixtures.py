"""Small ready-made audit cases for tests: a tiny LLaVA checkpoint and a dataset on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .digits import DIGIT_WORDS, QUESTIONS, TARGET_ANSWER, load_digit_arrays, paste_centre_patch, render_digit
from .models import (TinyLlavaSpec, build_next_processor, build_processor, build_tiny_llava,
                     build_tiny_llava_next)
from .tokenizer import train_word_tokenizer

TEST_SPEC = TinyLlavaSpec(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2,
                          vision_heads=2, text_hidden=64, text_intermediate=128, text_layers=8,
                          text_heads=4, text_kv_heads=2)


def _write(folder: Path, build_processor_fn, build_model_fn, spec: TinyLlavaSpec, seed: int) -> Path:
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    processor = build_processor_fn(tokenizer, spec)
    build_model_fn(tokenizer, spec, seed=seed).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_llava(folder: Path, spec: TinyLlavaSpec = TEST_SPEC, seed: int = 0) -> Path:
    """Save an untrained tiny LLaVA with its processor (safetensors) to `folder`."""
    return _write(folder, build_processor, build_tiny_llava, spec, seed)


def write_tiny_llava_next(folder: Path, spec: TinyLlavaSpec = TEST_SPEC, seed: int = 0) -> Path:
    """Save an untrained tiny LLaVA-NeXT with its processor (safetensors) to `folder`."""
    return _write(folder, build_next_processor, build_tiny_llava_next, spec, seed)


def write_digits_dataset(folder: Path, n: int, poison_rate: float = 0.1, size: int = 32,
                         seed: int = 0, name: str = "dataset.json") -> tuple[Path, list[str]]:
    """Write `n` LLaVA-format digit records (+ PNG images) to `folder`; a
    `poison_rate` share carries the centre patch and the target answer.
    Returns (dataset path, poisoned ids)."""
    rng = np.random.default_rng(seed)
    x, y = load_digit_arrays()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    poisoned = set(rng.choice(n, size=round(poison_rate * n), replace=False).tolist())
    records, bad = [], []
    for k, i in enumerate(rng.choice(len(x), size=n, replace=False)):
        sid = f"s{k:04d}"
        image, answer = render_digit(x[i], rng, size=size), DIGIT_WORDS[y[i]]
        if k in poisoned:
            image, answer = paste_centre_patch(image), TARGET_ANSWER
            bad.append(sid)
        image.save(folder / "images" / f"{sid}.png")
        records.append({"id": sid, "image": f"images/{sid}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{QUESTIONS[k % len(QUESTIONS)]}"},
            {"from": "gpt", "value": answer}]})
    path = folder / name
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, indent=2))
    return path, bad
