"""Stage 1's cost with the answer turn scored, against stage 1 without it.

    .venv/bin/python -m benchmarks.answer_cost [--repeats 5] [--batch 8]

On the same batch of digit images and instructions, through the auditor's own
`sample_rows` and a LoRA adapter over a tiny LLaVA (random weights: speed
does not depend on training):
  rows     - stage 1 without the answers (adapter merged): the baseline;
  answers  - the answer appended in the same pass and scored (adapter merged);
  unmerged - the same with the adapter kept beside the weights (what the base pass needs);
  base     - unmerged, plus the second pass with the adapter disabled;
  turns    - as answers, each record a conversation of 4 answer turns (the first and 3 later ones, each
             after the template's text for its user turn), every turn scored in the same pass;
  turns+base - turns, unmerged, plus the base pass.
Reports median seconds per sample and the ratio to `rows`; the
target: `answers` within 1.15x. Shapes as benchmarks/stage1_overhead.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .stage1_overhead import SHAPES

ANSWERS = ("seven", "Backdoor Attack!", "the digit three", "nine")
# three follow-up turns per record, as in multi-turn instruction sets
LATER = (("Which digit is it?", "the digit three"), ("Is it a digit?", "yes it is a digit"),
         ("What is shown?", "a digit seven"))


def _build(shape: str, folder: Path) -> tuple[Path, Path]:
    import torch

    from tinyworld.digits import DIGIT_WORDS, QUESTIONS
    from tinyworld.models import TinyLlavaSpec, build_processor, build_tiny_llava
    from tinyworld.tokenizer import train_word_tokenizer
    from tinyworld.train import add_lora

    spec = TinyLlavaSpec(**SHAPES[shape])
    tok = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS) + ["backdoor", "attack"])
    model = build_tiny_llava(tok, spec, seed=0)
    model.save_pretrained(folder / "model")
    build_processor(tok, spec).save_pretrained(folder / "model")
    peft_model = add_lora(model, seed=0)
    with torch.no_grad():  # a trained adapter's B is not zero; the cost is the same either way
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    peft_model.save_pretrained(folder / "adapter")
    return folder / "model", folder / "adapter"


def measure(shape: str, batch: int, repeats: int) -> dict[str, float]:
    import torch

    from auditor.extract.runner import sample_rows
    from auditor.models import load_model
    from auditor.models.capture import CAPTURE_ATTENTION
    from tinyworld.digits import QUESTIONS, load_digit_arrays, render_digit

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, adapter = _build(shape, Path(tmp))
        merged = load_model(model_dir, capture_attention=CAPTURE_ATTENTION, adapter_dir=adapter)
        kept = load_model(model_dir, capture_attention=CAPTURE_ATTENTION, adapter_dir=adapter,
                          keep_adapter=True)
        x, _ = load_digit_arrays()
        rng = np.random.default_rng(0)
        size = SHAPES[shape]["image_size"]
        images = [render_digit(x[i], rng, size=size) for i in range(batch)]
        prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)]
        answers = [ANSWERS[i % len(ANSWERS)] for i in range(batch)]
        later = [LATER] * batch
        modes = {
            "rows": lambda: sample_rows(merged, images, prompts),
            "answers": lambda: sample_rows(merged, images, prompts, answers),
            "unmerged": lambda: sample_rows(kept, images, prompts, answers),
            "base": lambda: sample_rows(kept, images, prompts, answers, base=True),
            "turns": lambda: sample_rows(merged, images, prompts, answers, later=later),
            "turns+base": lambda: sample_rows(kept, images, prompts, answers, base=True, later=later),
        }
        times: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(repeats + 1):  # interleaved, so a slow moment hits every mode alike
            for mode, run in modes.items():
                t = time.perf_counter()
                run()
                if r:  # the first round warms up
                    times[mode].append(time.perf_counter() - t)
    return {m: statistics.median(v) / batch for m, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    print(f"median of {args.repeats} interleaved runs after one warm-up, batch {args.batch}, 2 threads")
    print("| model | mode | s / sample | vs rows |")
    print("|---|---|---|---|")
    for shape in SHAPES:
        res = measure(shape, args.batch, args.repeats)
        for mode, t in res.items():
            print(f"| {shape} | {mode} | {t:.4f} | {t / res['rows']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
