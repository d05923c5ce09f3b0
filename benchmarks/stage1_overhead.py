"""Stage-1 cost against a plain forward pass, and against the reference code's way.

    .venv/bin/python benchmarks/stage1_overhead.py [--repeats 5] [--batch 1 8]

For each model shape, three modes run in separate processes (so peak memory is
their own), on the same batch of digit images:
  plain   - the model's normal SDPA prefill (no attention kept): the baseline;
  capture - bye-audit's stage 1 (SDPA outputs + fp32 rows of the query position);
  eager   - eager attention with output_attentions=True, every layer's S x S map
            (how the reference code gets the same rows).
Reports, per batch size, median seconds per sample and peak RSS (MiB) per
mode, the ratios to `plain` (b/a for capture) and eager against capture
(c/b). Shapes: the bundled example's tiny LLaVA (64 image tokens), and a
LLaVA-1.5-shaped one (336 px, patch 14: 576 image tokens, 8 decoder layers,
random weights: speed and memory do not depend on training).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

SHAPES = {
    "example-64-tokens": dict(image_size=64, patch_size=8, vision_hidden=64, vision_layers=4,
                              text_hidden=128, text_intermediate=256, text_layers=8),
    "llava-1.5-shaped-576-tokens": dict(image_size=336, patch_size=14, vision_hidden=128,
                                        vision_layers=4, text_hidden=512, text_intermediate=1024,
                                        text_layers=8, text_heads=8, text_kv_heads=8),
}


def run_mode(shape: str, mode: str, repeats: int, batch: int) -> dict:
    import torch

    from auditor.models.capture import CAPTURE_ATTENTION, capturing, last_prompt_position
    from auditor.models.llava import LlavaFamily
    from tinyworld.digits import DIGIT_WORDS, QUESTIONS, load_digit_arrays, render_digit
    from tinyworld.models import TinyLlavaSpec, build_processor, build_tiny_llava
    from tinyworld.tokenizer import train_word_tokenizer

    torch.set_num_threads(2)
    spec = TinyLlavaSpec(**SHAPES[shape])
    tok = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    processor = build_processor(tok, spec)
    model = build_tiny_llava(tok, spec, seed=0,
                             attn_implementation={"plain": "sdpa", "capture": CAPTURE_ATTENTION,
                                                  "eager": "eager"}[mode])
    x, _ = load_digit_arrays()
    rng = np.random.default_rng(0)
    images = [render_digit(x[i], rng, size=spec.image_size) for i in range(batch)]
    fam = LlavaFamily()
    inputs = fam.build_batch(processor, images, [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)])
    qpos = last_prompt_position(inputs["attention_mask"])
    modules = fam.decoder_attention_modules(model)
    times = []
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(repeats + 1):  # the first run warms up
        t = time.perf_counter()
        with torch.inference_mode():
            if mode == "capture":
                with capturing(modules, qpos):
                    model(**inputs, use_cache=False, logits_to_keep=1)
            elif mode == "eager":
                out = model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=True)
                _ = [a[torch.arange(batch), :, qpos] for a in out.attentions]
                del out
            else:
                model(**inputs, use_cache=False, logits_to_keep=1)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds_per_batch": statistics.median(times[1:]), "peak_rss_mib": peak / 1024,
            "rss_growth_mib": (peak - base_rss) / 1024, "seq_len": int(inputs["input_ids"].shape[1]),
            "batch": batch}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--child", nargs=2, metavar=("SHAPE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_mode(*args.child, args.repeats, args.batch[0])))
        return 0
    rows = []
    for batch in args.batch:
        for shape in SHAPES:
            res = {}
            for mode in ("plain", "capture", "eager"):
                out = subprocess.run([sys.executable, __file__, "--child", shape, mode, "--repeats",
                                      str(args.repeats), "--batch", str(batch)],
                                     capture_output=True, text=True, check=True)
                res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            for mode in ("plain", "capture", "eager"):
                r = res[mode]
                rows.append((batch, shape, mode, r["seq_len"], r["seconds_per_batch"] / batch,
                             r["seconds_per_batch"] / res["plain"]["seconds_per_batch"],
                             r["rss_growth_mib"], r["peak_rss_mib"] / res["plain"]["peak_rss_mib"],
                             r["seconds_per_batch"] / res["capture"]["seconds_per_batch"],
                             r["peak_rss_mib"] / res["capture"]["peak_rss_mib"]))
    print(f"median of {args.repeats} runs after one warm-up, 2 threads; each mode in its own process")
    print("| batch | model | mode | S | s / sample | time vs plain | RSS growth (MiB) | peak RSS vs plain | "
          "time vs capture | peak RSS vs capture |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b, shape, mode, s_, t, tr, g, mr, tc, mc in rows:
        print(f"| {b} | {shape} | {mode} | {s_} | {t:.4f} | {tr:.2f}x | {g:.0f} | {mr:.2f}x | {tc:.2f}x | "
              f"{mc:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
