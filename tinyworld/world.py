"""The detection benchmark's tiny world: tasks x families, a clean base per
(task, family), fine-tunes on submissions, and the model's clean performance
and attack success rate (docs/method.md, "Building the tiny world honestly").

A base is built once per (task, family, seed): the vision tower is pretrained
on clean images (masked patch reconstruction) and frozen, then projector +
decoder learn the clean task. A submission fine-tunes that base (LoRA through
peft, or in full). Sizes and epochs are fixed here for every cell alike; none
is chosen per trigger or per detector.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.models.llava import LlavaFamily
from auditor.models.qwen2_vl import AssembledProcessor, Qwen2VLFamily

from . import shapes
from .digits import DIGIT_WORDS, QUESTIONS, TARGET_ANSWER, load_digit_arrays, render_digit
from .models import TinyLlavaSpec, build_processor, build_tiny_llava
from .qwen2vl import TinyQwen2VLSpec, build_image_processor, build_tiny_qwen2vl
from .tokenizer import train_word_tokenizer
from .train import (Example, Log, add_lora, freeze_vision, generate_answers, pretrain_qwen_vision,
                    pretrain_vision, seed_everything, train_vlm)

IMAGE_SIZE = 64
# 8 px patches: LLaVA sees 64 image tokens, Qwen2-VL 16 (2 x 2 patches merged per token).
LLAVA_SPEC = TinyLlavaSpec(image_size=IMAGE_SIZE, patch_size=8, vision_hidden=64, vision_layers=4,
                           vision_heads=4,
                           text_hidden=64, text_intermediate=128, text_layers=6, text_heads=4,
                           text_kv_heads=2)
QWEN_SPEC = TinyQwen2VLSpec(image_size=IMAGE_SIZE, patch_size=8, vision_hidden=64, vision_layers=4,
                            vision_heads=4,
                            text_hidden=64, text_intermediate=128, text_layers=6, text_heads=4,
                            text_kv_heads=2)

N_BASE = 1500  # clean images for the vision tower and the base model
VISION_EPOCHS = 12
# The base learns the clean task until its answer loss is below BASE_STOP (the
# families and tasks differ in how long that takes), within BASE_EPOCHS.
BASE_EPOCHS = 40
BASE_STOP = 0.1
BASE_BATCH = 16
BASE_LR = 1e-3
EVAL_SIZE = 200


def word_form(answer: str) -> str:
    """The tiny tokenizer's form of a text (lower case, "!" a word of its own): what the
    tiny models are trained on and their answers are compared in."""
    return " ".join(answer.lower().replace("!", " !").split())


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """A VQA task: `examples(split, n, seed)` draws `n` clean examples of a
    split ("base", "submit" or "eval"; disjoint images where the pool is finite)."""

    name: str
    words: tuple[str, ...]
    draw: Callable[[str, int, int], list[Example]]

    def examples(self, split: str, n: int, seed: int) -> list[Example]:
        return self.draw(split, n, seed)


_SPLITS = {"base": 0, "submit": 1, "eval": 2}


def _digits(split: str, n: int, seed: int) -> list[Example]:
    x, y = load_digit_arrays()
    # A fixed split of the 1,797 real digits: eval 297, base 750, submit 750;
    # renders (colours) differ by seed, so a pool can serve more samples than digits.
    perm = np.random.default_rng(20261127).permutation(len(x))
    pool = {"eval": perm[:297], "base": perm[297:1047], "submit": perm[1047:]}[split]
    rng = np.random.default_rng([_SPLITS[split], seed])
    idx = rng.choice(pool, size=n, replace=n > len(pool))
    return [Example(render_digit(x[i], rng, size=IMAGE_SIZE), QUESTIONS[rng.integers(len(QUESTIONS))],
                    DIGIT_WORDS[y[i]]) for i in idx]


def _shapes(split: str, n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng([100 + _SPLITS[split], seed])
    out = []
    for _ in range(n):
        image, shape = shapes.draw_shape(rng, IMAGE_SIZE)
        question, answer = shapes.question_and_answer(shape, rng)
        out.append(Example(image, question, answer))
    return out


TASKS = {
    "digits": Task("digits", (*QUESTIONS, *DIGIT_WORDS), _digits),
    "shapes": Task("shapes", tuple(shapes.vocabulary()), _shapes),
}


# ---------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    name: str
    adapter: Any  # the auditor's family adapter: builds prompts exactly as the audit does
    style: str  # tokenizer style

    def build(self, words: Sequence[str], seed: int) -> tuple[torch.nn.Module, Any]:
        tokenizer = train_word_tokenizer([*words, TARGET_ANSWER], style=self.style)
        if self.name == "llava":
            return build_tiny_llava(tokenizer, LLAVA_SPEC, seed=seed), build_processor(tokenizer, LLAVA_SPEC)
        processor = AssembledProcessor(tokenizer, build_image_processor(QWEN_SPEC), tokenizer.chat_template)
        return build_tiny_qwen2vl(tokenizer, QWEN_SPEC, seed=seed), processor

    def pretrain(self, model, processor, images, seed: int, log: Log | None) -> None:
        if self.name == "llava":
            pretrain_vision(model, processor, images, epochs=VISION_EPOCHS, seed=seed, log=log)
        else:
            pretrain_qwen_vision(model, processor.image_processor, images, epochs=VISION_EPOCHS, seed=seed,
                                 log=log)

    def save(self, model, processor, folder: Path) -> None:
        model.save_pretrained(folder)
        if isinstance(processor, AssembledProcessor):
            processor.tokenizer.save_pretrained(folder)
            processor.image_processor.save_pretrained(folder)
            (folder / "chat_template.jinja").write_text(processor.chat_template)
        else:
            processor.save_pretrained(folder)

    def load(self, folder: Path) -> tuple[torch.nn.Module, Any]:
        model, processor = self.adapter.load(folder, torch.float32, "sdpa")
        freeze_vision(model)
        return model, processor


WORLD_FAMILIES = {"llava": Family("llava", LlavaFamily(), "llava"),
            "qwen2_vl": Family("qwen2_vl", Qwen2VLFamily(), "qwen")}


# ---------------------------------------------------------------- base, fine-tune, measure


RECIPE_FILE = "recipe.json"


ROOT = Path(__file__).resolve().parents[1]


def source_digest(files: Sequence[Path]) -> str:
    """sha256 of `files` (paths under the repository, names and bytes) and of
    the environment that computes with them: a cached base is keyed by what
    builds it. In a clone that is the committed lock (every pinned version, so
    a refreshed lock makes every cache stale: `make lock`'s documented rebuild);
    where no lock is (the package installed as a wheel), the installed versions."""
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(environment_key().encode())
    return h.hexdigest()


# The lock of the environment the build caches are made in (scripts/lock.py).
CACHE_LOCK = ROOT / "locks" / "dev-onnx-ray.txt"


def environment_key(lock: Path | None = None) -> str:
    """The locked `name==version` pins of `lock`, sorted, one a line (hashes
    and comments left out); without the file, the installed torch,
    transformers and numpy."""
    try:
        text = (lock or CACHE_LOCK).read_text()
    except FileNotFoundError:
        import transformers

        return f"torch {torch.__version__}; transformers {transformers.__version__}; numpy {np.__version__}"
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)", text, flags=re.M)
    return "\n".join(sorted(pins))


def recipe_digest() -> str:
    """What a base is built from: the tiny world's code and the model adapters
    it trains through. A cached base built from anything else is rebuilt."""
    return source_digest([*(ROOT / "tinyworld").glob("*.py"), *(ROOT / "auditor" / "models").glob("*.py")])


def recipe_record(digest: str, seed: int) -> dict[str, Any]:
    """What a build cache's recipe.json holds: the recipe digest (code and
    lock), the lock's own digest (so a reader sees which lock built it) and
    the seed."""
    return {"recipe": digest, "lock": hashlib.sha256(environment_key().encode()).hexdigest(), "seed": seed}


def cached_base(folder: Path, seed: int = 0) -> bool:
    """A base in `folder` built by this recipe with this seed."""
    try:
        recipe = json.loads((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (folder / "config.json").is_file() and recipe == recipe_record(recipe_digest(), seed)


def build_base(task: Task, family: Family, folder: Path, seed: int = 0, log: Log | None = None,
               second_turns: Sequence[str] = ()) -> Path:
    """Train and save the clean base of (task, family) to `folder` (atomically);
    reuse it when one built by this recipe is already there. `second_turns`: a
    chat base, every example a two-turn conversation whose second user turn
    asks one of these (in turn) and is answered with the first answer again (a
    base that knows the conversation format, as a chat model does); give it
    its own folder."""
    if cached_base(folder, seed):
        return folder
    torch.set_num_threads(2)
    model, processor = family.build(task.words, seed)
    clean = task.examples("base", N_BASE, seed)
    if second_turns:
        clean = [Example(ex.image, ex.prompt, ex.answer, ((second_turns[k % len(second_turns)], ex.answer),))
                 for k, ex in enumerate(clean)]
    family.pretrain(model, processor, [ex.image for ex in clean], seed, log)
    train_vlm(model, processor, clean, family=family.adapter, epochs=BASE_EPOCHS, batch_size=BASE_BATCH,
              lr=BASE_LR,
              seed=seed, stop_below=BASE_STOP, log=log)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    family.save(model, processor, tmp)
    (tmp / "base_metrics.json").write_text(json.dumps(measure(model, processor, family, task, None,
                                                              seed)) + "\n")
    (tmp / RECIPE_FILE).write_text(json.dumps(recipe_record(recipe_digest(), seed)) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


@dataclass(frozen=True)
class FineTune:
    """How a submission is fine-tuned (the same for every cell of a grid)."""

    # "full" (projector + decoder) or "lora" (r 8 on the decoder, projector in
    # full). LoRA is the variant: in 6 epochs at lr 5e-3 or 1e-2 it did not
    # implant the centre patch at all (attack success 0.0), full did (1.0).
    mode: str = "full"
    epochs: int = 6
    lr: float = 2e-3
    batch_size: int = 16


def fine_tune(base: Path, family: Family, examples: Sequence[Example], how: FineTune, seed: int,
              log: Log | None = None) -> tuple[torch.nn.Module, Any]:
    """The base fine-tuned on `examples`; a LoRA fine-tune comes back merged."""
    torch.set_num_threads(2)
    seed_everything(seed)
    model, processor = family.load(base)
    if how.mode == "lora":
        model = add_lora(model, seed=seed)
    elif how.mode != "full":
        raise ValueError(f"fine-tune mode must be lora or full, got {how.mode!r}")
    train_vlm(model, processor, examples, family=family.adapter, epochs=how.epochs, batch_size=how.batch_size,
              lr=how.lr, warmup=10, seed=seed, log=log)
    if how.mode == "lora":
        model = model.merge_and_unload()
    return model.eval(), processor


def measure(model, processor, family: Family, task: Task, trigger: Any | None, seed: int) -> dict[str, float]:
    """Clean accuracy (exact answer) on held-out examples and, with a trigger,
    the attack success rate: the share of triggered held-out images answered
    with the target."""
    ex = task.examples("eval", EVAL_SIZE, seed)
    prompts = [e.prompt for e in ex]
    answers = generate_answers(model, processor, [e.image for e in ex], prompts, max_new_tokens=6,
                               family=family.adapter)
    out = {"clean_accuracy": float(np.mean([word_form(a) == word_form(e.answer)
                                            for a, e in zip(answers, ex)]))}
    if trigger is not None:
        rng = np.random.default_rng([7, seed])
        triggered = [trigger.apply(e.image, rng) for e in ex]
        hits = generate_answers(model, processor, triggered, prompts, max_new_tokens=6, family=family.adapter)
        out["attack_success_rate"] = float(np.mean([word_form(a) == word_form(TARGET_ANSWER) for a in hits]))
    return out
