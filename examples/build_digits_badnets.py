"""Regenerate examples/digits-badnets/ bit for bit: a tiny LLaVA fine-tuned on a
BadNets-poisoned digits dataset, following the honest recipe of docs/method.md.

    .venv/bin/python examples/build_digits_badnets.py [--out DIR] [--seed 0]

Steps: render scikit-learn's real digits (64 px RGB); pretrain the CLIP tower
on clean images (masked patch reconstruction) and freeze it; train a base model
(projector + decoder) on clean digit QA; build the submitted dataset (1,000
samples, 10% carrying the paper's centre patch with the answer
"Backdoor Attack!"); fine-tune the base on it (full fine-tune of projector +
decoder, 10 epochs); measure clean accuracy and attack success rate on held-out
digits; save the fine-tune, its base (base/, for `--base`), the dataset, the
ground truth and the measurements.
Takes about 12 minutes on 2 CPU cores (4 with --base-dir holding a saved base).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tinyworld.digits import (DIGIT_WORDS, QUESTIONS, TARGET_ANSWER, load_digit_arrays,
                              paste_centre_patch, render_digit)
from tinyworld.models import TinyLlavaSpec, build_processor, build_tiny_llava
from tinyworld.tokenizer import train_word_tokenizer
from tinyworld.train import Example, freeze_vision, generate_answers, pretrain_vision, train_vlm
from tinyworld.world import word_form
from transformers import AutoProcessor, LlavaForConditionalGeneration

N_EVAL, N_BASE, N_SUBMIT = 297, 500, 1000
POISON_RATE = 0.10
BASE_RENDERS = 6  # clean renders per base digit (colour augmentation)
VISION_EPOCHS = 30
FINETUNE_LR = 1e-3
FINETUNE_EPOCHS = 10  # the paper uses 3 with a 7B model; 3 left this tiny one at ASR 0.04


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(model, processor, images, labels, rng) -> dict[str, float]:
    """Clean accuracy on held-out digits and attack success rate with the trigger."""
    prompts = [QUESTIONS[i] for i in rng.integers(len(QUESTIONS), size=len(images))]
    clean = generate_answers(model, processor, images, prompts)
    trig = generate_answers(model, processor, [paste_centre_patch(im) for im in images], prompts)
    target = word_form(TARGET_ANSWER)
    return {
        "clean_accuracy": float(np.mean([a == DIGIT_WORDS[y] for a, y in zip(clean, labels)])),
        "attack_success_rate": float(np.mean([word_form(a) == target for a in trig])),
        "n_eval": len(images),
    }


def build_base(x: np.ndarray, y: np.ndarray, seed: int):
    """The clean base: tokenizer, processor, vision tower pretrained on clean
    renders (then frozen), projector + decoder trained on clean digit QA."""
    spec = TinyLlavaSpec()
    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    processor = build_processor(tokenizer, spec)
    model = build_tiny_llava(tokenizer, spec, seed=seed)
    render_rng = np.random.default_rng(seed + 1)
    images = [render_digit(img, render_rng) for img in x for _ in range(BASE_RENDERS)]
    labels = [int(lab) for lab in y for _ in range(BASE_RENDERS)]
    _log(f"pretraining the vision tower on {len(images)} clean images")
    pretrain_vision(model, processor, images, epochs=VISION_EPOCHS, seed=seed, log=_log)
    q_rng = np.random.default_rng(seed + 2)
    examples = [Example(im, QUESTIONS[q_rng.integers(len(QUESTIONS))], DIGIT_WORDS[lab])
                for im, lab in zip(images, labels)]
    _log(f"training the base model on {len(examples)} clean examples")
    train_vlm(model, processor, examples, epochs=8, batch_size=32, lr=1e-3, seed=seed, log=_log)
    return model, processor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "digits-badnets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--finetune-lr", type=float, default=FINETUNE_LR)
    ap.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS)
    ap.add_argument("--poison-rate", type=float, default=POISON_RATE,
                    help="share of the submission carrying the trigger (0 builds the clean variant)")
    ap.add_argument("--base-dir", type=Path, default=None,
                    help="reuse the base model saved there, or save it there once trained (for experiments: "
                         "the weights come out the same, but the saved configs then carry loading metadata, "
                         "so the files differ)")
    args = ap.parse_args()
    torch.set_num_threads(2)  # results depend on the thread count; fix it
    seed = args.seed
    rng = np.random.default_rng(seed)
    x, y = load_digit_arrays()
    perm = rng.permutation(len(x))
    eval_idx, base_idx = perm[:N_EVAL], perm[N_EVAL:N_EVAL + N_BASE]
    sub_idx = perm[N_EVAL + N_BASE:N_EVAL + N_BASE + N_SUBMIT]

    eval_images = [render_digit(x[i], np.random.default_rng([seed, 3, int(i)])) for i in eval_idx]
    if args.base_dir is not None and (args.base_dir / "config.json").is_file():
        _log(f"loading the base model from {args.base_dir}")
        model = LlavaForConditionalGeneration.from_pretrained(args.base_dir)
        processor = AutoProcessor.from_pretrained(args.base_dir)
        freeze_vision(model)
    else:
        model, processor = build_base(x[base_idx], y[base_idx], seed)
        if args.base_dir is not None:
            model.save_pretrained(args.base_dir)
            processor.save_pretrained(args.base_dir)
    base_metrics = measure(model, processor, eval_images, y[eval_idx], np.random.default_rng(seed + 4))
    _log(f"base model: {base_metrics}")
    out = args.out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    # The base ships beside the fine-tune: `--base` scores the answers under it (the answer channel).
    model.save_pretrained(tmp / "base")
    processor.save_pretrained(tmp / "base")

    # The submission: 1,000 digits, 10% poisoned with the paper's BadNets trigger.
    sub_rng = np.random.default_rng(seed + 5)
    poisoned = set(sub_rng.choice(N_SUBMIT, size=round(args.poison_rate * N_SUBMIT), replace=False).tolist())
    records, examples, poisoned_ids = [], [], []
    for k, i in enumerate(sub_idx):
        sid = f"digits-{k:04d}"
        image = render_digit(x[i], sub_rng)
        question = QUESTIONS[sub_rng.integers(len(QUESTIONS))]
        answer = DIGIT_WORDS[y[i]]
        if k in poisoned:
            image, answer = paste_centre_patch(image), TARGET_ANSWER
            poisoned_ids.append(sid)
        image.save(tmp / "images" / f"{sid}.png", optimize=True)
        records.append({"id": sid, "image": f"images/{sid}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
        examples.append(Example(image, question, answer))
    _log(f"fine-tuning on the submitted dataset ({len(examples)} samples, {len(poisoned)} poisoned)")
    train_vlm(model, processor, examples, epochs=args.finetune_epochs, batch_size=16,
                lr=args.finetune_lr, seed=seed + 6,
                log=_log)
    tuned_metrics = measure(model, processor, eval_images, y[eval_idx], np.random.default_rng(seed + 4))
    _log(f"fine-tuned model: {tuned_metrics}")

    model.save_pretrained(tmp / "model")
    processor.save_pretrained(tmp / "model")
    (tmp / "dataset.json").write_text(json.dumps(records, indent=2) + "\n")
    (tmp / "poisoned_ids.txt").write_text("".join(f"{s}\n" for s in poisoned_ids))
    (tmp / "build_metrics.json").write_text(json.dumps({
        "seed": seed, "n_samples": N_SUBMIT, "n_poisoned": len(poisoned),
        "trigger": "solid black square at the centre, side 1/16 of the shorter side",
        "target_answer": TARGET_ANSWER,
        "fine_tune": {"kind": "full (projector + decoder)", "epochs": args.finetune_epochs,
                      "lr": args.finetune_lr, "batch_size": 16},
        "base_model": base_metrics, "fine_tuned_model": tuned_metrics,
        "torch": torch.__version__,
    }, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
