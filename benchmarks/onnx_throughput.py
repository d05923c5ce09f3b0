"""Stage-1 throughput: ONNX Runtime backend against the torch backend, same inputs.

    .venv/bin/python benchmarks/onnx_throughput.py [--samples 96] [--batch 1 8]

For each model, the graph is exported once (`exporters.export_onnx`), then
stage 1 (`extract_features`: image decoding, processor, forward pass, row
capture, entropies) runs over the same digit dataset with each backend, in
its own process, one batch of warm-up first. Reports samples/s and the ratio
onnx / torch, for the whole of stage 1 and for the forward pass alone (the
rest, processor and entropies, is the same code for both). Models: the
bundled example's fine-tune (64 image tokens) and a
LLaVA-1.5-shaped one (336 px, 576 image tokens, 8 decoder layers of width 512,
random weights: speed does not depend on training). 2 threads for both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-badnets"
LLAVA15 = dict(image_size=336, patch_size=14, vision_hidden=128, vision_layers=4, text_hidden=512,
               text_intermediate=1024, text_layers=8, text_heads=8, text_kv_heads=8)


def prepare(work: Path) -> dict[str, tuple[Path, Path]]:
    """model name -> (model folder, dataset file); the LLaVA-1.5 shape is written here."""
    from tinyworld.digits import DIGIT_WORDS, QUESTIONS
    from tinyworld.fixtures import write_digits_dataset
    from tinyworld.models import TinyLlavaSpec, build_processor, build_tiny_llava
    from tinyworld.tokenizer import train_word_tokenizer

    spec = TinyLlavaSpec(**LLAVA15)
    tok = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
    model_dir = work / "llava15"
    build_tiny_llava(tok, spec, seed=0).save_pretrained(model_dir)
    build_processor(tok, spec).save_pretrained(model_dir)
    data, _ = write_digits_dataset(work / "data336", n=256, size=336)
    return {"example-64-tokens": (EXAMPLE / "model", EXAMPLE / "dataset.json"),
            "llava-1.5-shaped-576-tokens": (model_dir, data)}


def run(model_dir: str, data: str, onnx: str | None, samples: int, batch: int) -> dict:
    import torch

    from auditor.config import AuditConfig
    from auditor.data import read_dataset
    from auditor.extract.runner import extract_features
    from auditor.pipeline import load

    torch.set_num_threads(2)
    config = AuditConfig.of(batch_size=batch, backend="onnx" if onnx else "torch", threads=2, device="cpu")
    loaded = load(Path(model_dir), config.stage1, onnx_path=Path(onnx) if onnx else None)
    dataset = read_dataset(Path(data))
    warm = replace(dataset, samples=dataset.samples[:batch])
    extract_features(loaded, warm, config)
    forward = [0.0]
    inner = type(loaded).forward_rows

    def timed_forward(self, batch):  # the forward pass alone, inside the same run
        t0 = time.perf_counter()
        try:
            return inner(self, batch)
        finally:
            forward[0] += time.perf_counter() - t0

    type(loaded).forward_rows = timed_forward
    timed = replace(dataset, samples=dataset.samples[batch:batch + samples])
    t = time.perf_counter()
    rows = extract_features(loaded, timed, config)
    seconds = time.perf_counter() - t
    assert all(r.status == "ok" for r in rows), [r.reason for r in rows if r.status != "ok"]
    return {"samples": len(rows), "seconds": seconds, "samples_per_s": len(rows) / seconds,
            "forward_seconds": forward[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "DATA", "ONNX"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model_dir, data, onnx = args.child
        print(json.dumps(run(model_dir, data, None if onnx == "-" else onnx, args.samples, args.batch[0])))
        return 0
    from exporters import export_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model_dir, data) in prepare(Path(tmp)).items():
            graph = Path(tmp) / f"{name}.onnx"
            t = time.perf_counter()
            export_onnx(model_dir, graph)
            export_s = time.perf_counter() - t
            for batch in args.batch:
                res = {}
                for backend, onnx in (("torch", "-"), ("onnx", str(graph))):
                    out = subprocess.run([sys.executable, __file__, "--child", str(model_dir), str(data),
                                          onnx,
                                          "--samples", str(args.samples), "--batch", str(batch)],
                                         capture_output=True, text=True, check=True)
                    res[backend] = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((name, batch, res["torch"]["samples_per_s"], res["onnx"]["samples_per_s"],
                             res["torch"]["forward_seconds"] / res["onnx"]["forward_seconds"], export_s))
    print(f"{args.samples} samples after one warm-up batch, 2 threads; each backend in its own process")
    print("| model | batch | torch samples/s | onnx samples/s | onnx / torch | forward pass alone, onnx / "
          "torch | export (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, t, o, f, e in rows:
        print(f"| {name} | {batch} | {t:.1f} | {o:.1f} | {o / t:.2f}x | {f:.2f}x | {e:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
