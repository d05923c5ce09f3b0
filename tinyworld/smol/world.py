"""The real-LM world's submissions: a LoRA adapter over the clean base
(base.py), kept unmerged as a fine-tuning service returns it, and what it
does on held-out images (docs/benchmarks.md, "The real-LM world")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..train import Example, Log, add_lora, seed_everything, train_vlm
from ..world import TASKS
from . import lm as lm_module
from .base import (ALIGN_EPOCHS, ALIGN_LR, BATCH, EVAL_SIZE, FAMILY, INSTRUCT_EPOCHS, INSTRUCT_LR, INSTRUCT_R,
                   N_ALIGN, N_INSTRUCT, N_VISION, VISION_EPOCHS, VLMS, build_base, load_base, measure,
                   text_answers, vlm_of)


@dataclass(frozen=True)
class Submission:
    """How a submission is fine-tuned (the same for every cell): the paper's
    LoRA for 3 epochs; r 8 / alpha 16 on q, k, v, o, the projector in full
    (as LLaVA's LoRA recipe trains it). lr 1e-3, not LLaVA's 2e-4: a cell
    has about 50 steps, LLaVA's fine-tunes thousands."""

    epochs: int = 3
    lr: float = 1e-3
    r: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    batch_size: int = BATCH


SUBMISSION = Submission()


def fine_tune(base: Path, examples: Sequence[Example], seed: int, how: Submission = SUBMISSION,
              log: Log | None = None, device: str = "cpu"):
    """The submission, trained on `device`: a peft model (the LoRA adapter
    unmerged over the base) and the processor. `model.save_pretrained(dir)`
    writes the adapter."""
    torch.set_num_threads(2)
    seed_everything(seed)
    model, processor = load_base(base, device)
    model = add_lora(model, r=how.r, alpha=how.alpha, seed=seed, targets=how.targets)
    train_vlm(model, processor, examples, family=vlm_of(model).family, epochs=how.epochs,
              batch_size=how.batch_size, lr=how.lr, warmup=5, seed=seed, log=log)
    return model.eval(), processor


def recipe(vlm: str = "llava") -> dict[str, Any]:
    """The sizes of this world with architecture `vlm`, as recorded with every benchmark cell."""
    spec = VLMS[vlm].spec
    return {"lm": f"SmolLM2-135M-Instruct ({lm_module.DIST} {lm_module.DIST_VERSION}, {lm_module.GGUF_NAME})",
            "spec": asdict(spec), "image_tokens": spec.image_tokens, "vision": [N_VISION, VISION_EPOCHS],
            "align": {"n": N_ALIGN, "epochs": ALIGN_EPOCHS, "lr": ALIGN_LR},
            "instruct": {"n": N_INSTRUCT, "epochs": INSTRUCT_EPOCHS, "lr": INSTRUCT_LR, "lora_r": INSTRUCT_R},
            "submission": asdict(SUBMISSION), "eval_size": EVAL_SIZE}


__all__ = ["FAMILY", "TASKS", "SUBMISSION", "VLMS", "Submission", "build_base", "fine_tune", "load_base",
           "measure", "recipe", "text_answers", "vlm_of"]
