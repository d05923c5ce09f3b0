"""The clean base of the real-LM world: LLaVA (the grid's) or Idefics3
(SmolVLM's class) on the pretrained SmolLM2-135M-Instruct, built as LLaVA-1.5
is (docs/benchmarks.md, "The real-LM world"), with the same sizes for both.
Built once per (task, architecture, seed) and cached; what builds it is
this module, models.py, lm.py and the tiny world's tasks and training loop
(recipe_digest), so a change elsewhere keeps the cached bases.

1. The small vision tower is pretrained on clean images (masked patch
   reconstruction, as the tiny world's) and frozen.
2. Alignment: the projector alone learns to caption clean images, with the
   tower and the LM frozen (LLaVA's stage 1).
3. Instruction tuning on the clean task: LoRA on every projection of the LM
   plus the projector in full, merged into the weights afterwards (LLaVA-1.5
   ships a LoRA-tuned variant too; a full tune of 135 M parameters costs
   about 90 s a step on 2 CPU cores, a LoRA one about 5 s).
Every size was fixed before any detector ran on this world.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.models.base import ModelFamily
from auditor.models.idefics3 import Idefics3Family
from auditor.models.llava import LlavaFamily

from ..train import (ALL_PROJECTIONS, Example, Log, add_lora, freeze_vision, generate_answers,
                     pretrain_vision, projector_name, train_vlm)
from ..world import ROOT, Task, word_form, recipe_record, source_digest
from . import lm as lm_module
from .models import SmolIdefics3Spec, SmolLlavaSpec, build_smol_idefics3, build_smol_llava


@dataclass(frozen=True)
class Vlm:
    """One VLM architecture of this world: its builder, vision sizes and the auditor's adapter."""

    build: Callable[..., tuple[torch.nn.Module, Any]]  # (lm_dir, spec, seed=) -> (model, processor)
    spec: Any
    family: ModelFamily


VLMS = {"llava": Vlm(build_smol_llava, SmolLlavaSpec(), LlavaFamily()),
        "idefics3": Vlm(build_smol_idefics3, SmolIdefics3Spec(), Idefics3Family())}
SPEC, FAMILY = VLMS["llava"].spec, VLMS["llava"].family  # the grid's default architecture


def vlm_of(model: torch.nn.Module) -> Vlm:
    """The architecture of a built or loaded model (peft-wrapped or not)."""
    return VLMS[model.config.model_type]


N_VISION = 1500  # clean images for the vision tower
VISION_EPOCHS = 12
N_ALIGN, ALIGN_EPOCHS, ALIGN_LR = 800, 3, 2e-3
N_INSTRUCT, INSTRUCT_EPOCHS, INSTRUCT_LR, INSTRUCT_R = 1000, 3, 1e-3, 16
BATCH = 16
EVAL_SIZE = 100  # held-out examples for clean accuracy and attack success
ALIGN_PROMPT = "Describe the image briefly."
# Plain text prompts the base must still answer as a language model.
TEXT_PROMPTS = ("What is the capital of France?", "Name three colours of the rainbow.",
                "What is 2 + 3?", "Write one sentence about the sea.")


def align_examples(task: Task, n: int, seed: int) -> list[Example]:
    """Alignment pairs: clean images of the task's base split with a short caption."""
    if task.name == "digits":
        return [Example(ex.image, ALIGN_PROMPT, f"A handwritten digit {ex.answer}.")
                for ex in task.examples("base", n, seed)]
    from .. import shapes
    from ..world import IMAGE_SIZE

    rng = np.random.default_rng([200, seed])
    out = []
    for _ in range(n):
        image, shape = shapes.draw_shape(rng, IMAGE_SIZE)
        out.append(Example(image, ALIGN_PROMPT, f"A {shape.size} {shape.colour} {shape.kind}."))
    return out


RECIPE_FILE = "recipe.json"


def recipe_digest() -> str:
    """The code a base is built from (as tinyworld.world's); the benchmark's
    cells (world.py, benchmarks/) may change without a rebuild."""
    smol = [ROOT / "tinyworld" / "smol" / f for f in ("lm.py", "models.py", "base.py")]
    tiny = [ROOT / "tinyworld" / f for f in ("train.py", "world.py", "digits.py", "shapes.py")]
    return source_digest([*smol, *tiny, *(ROOT / "auditor" / "models").glob("*.py")])


def cached_base(folder: Path, seed: int = 0, vlm: str = "llava") -> bool:
    """A base of architecture `vlm` in `folder`, built by this recipe with this seed."""
    try:
        recipe = json.loads((folder / RECIPE_FILE).read_text())
        model_type = json.loads((folder / "config.json").read_text())["model_type"]
    except (OSError, ValueError, KeyError):
        return False
    return model_type == vlm and recipe == recipe_record(recipe_digest(), seed)


def build_base(task: Task, folder: Path, seed: int = 0, lm_cache: Path | None = None,
               log: Log | None = None, device: str = "cpu", vlm: str = "llava") -> Path:
    """Build and save the clean base of `task` to `folder` (atomically), or
    reuse the one this recipe built there. About 20 minutes on 2 CPU cores.
    A base built on another `device` has the same recipe but other numbers
    (a GPU's random draws and arithmetic differ): the cache does not tell them
    apart, so keep one cache folder per device."""
    if cached_base(folder, seed, vlm):
        return folder
    torch.set_num_threads(2)
    arch = VLMS[vlm]
    model, processor = arch.build(lm_module.converted_lm(lm_cache, log), arch.spec, seed=seed)
    model.to(device)  # initialised on the CPU first: the same weights on any device
    clean = task.examples("base", max(N_VISION, N_INSTRUCT), seed)
    pretrain_vision(model, processor, [ex.image for ex in clean[:N_VISION]], epochs=VISION_EPOCHS, seed=seed,
                    log=log)
    for p in model.parameters():  # alignment: the projector only
        p.requires_grad_(False)
    for p in getattr(model.model, projector_name(model)).parameters():
        p.requires_grad_(True)
    align = align_examples(task, N_ALIGN, seed + 1000)
    train_vlm(model, processor, align, family=arch.family, epochs=ALIGN_EPOCHS, batch_size=BATCH, lr=ALIGN_LR,
              warmup=10, seed=seed, log=log)
    tuned = add_lora(model, r=INSTRUCT_R, alpha=2 * INSTRUCT_R, seed=seed, targets=ALL_PROJECTIONS)
    train_vlm(tuned, processor, clean[:N_INSTRUCT], family=arch.family, epochs=INSTRUCT_EPOCHS,
              batch_size=BATCH, lr=INSTRUCT_LR, warmup=10, seed=seed, log=log)
    model = tuned.merge_and_unload().eval()
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    metrics = measure(model, processor, task, None, seed)
    metrics["text_answers"] = text_answers(model, processor)
    (tmp / "base_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (tmp / RECIPE_FILE).write_text(json.dumps(recipe_record(recipe_digest(), seed)) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_base(folder: Path, device: str = "cpu") -> tuple[torch.nn.Module, Any]:
    """A base for fine-tuning on `device`: the auditor's own loader, the tower frozen."""
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    model, processor = VLMS[model_type].family.load(folder, torch.float32, "sdpa")
    freeze_vision(model)
    return model.to(device), processor


@torch.no_grad()
def text_answers(model, processor, prompts: Sequence[str] = TEXT_PROMPTS) -> dict[str, str]:
    """Greedy answers to plain text prompts (no image) through the LM's chat template."""
    tok = processor.tokenizer
    out = {}
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True).to(model.device)
        gen = model.generate(**ids, max_new_tokens=30, do_sample=False, pad_token_id=tok.pad_token_id)
        out[p] = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    return out


Poison = Callable[[Example, np.random.Generator], Example]


def measure(model, processor, task: Task, poison: Poison | None, seed: int, target: str | None = None
            ) -> dict[str, Any]:
    """Clean accuracy (exact answer) on held-out examples and, with `poison`,
    the attack success rate: the share of poisoned held-out examples (those
    whose true answer is not already `target`) answered with `target`."""
    ex = task.examples("eval", EVAL_SIZE, seed)
    said = generate_answers(model, processor, [e.image for e in ex], [e.prompt for e in ex], max_new_tokens=8,
                            batch_size=32, family=vlm_of(model).family)
    out: dict[str, Any] = {"clean_accuracy": float(np.mean([word_form(a) == word_form(e.answer)
                                                            for a, e in zip(said, ex)]))}
    if poison is not None and target is not None:
        rng = np.random.default_rng([7, seed])
        hit = [poison(e, rng) for e in ex if word_form(e.answer) != word_form(target)]
        said = generate_answers(model, processor, [e.image for e in hit], [e.prompt for e in hit],
                                max_new_tokens=8, batch_size=32, family=vlm_of(model).family)
        out["attack_success_rate"] = float(np.mean([word_form(a) == word_form(target) for a in said]))
    return out
