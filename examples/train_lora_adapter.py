"""A LoRA submission to audit: an adapter fine-tuned over the example's clean
base (examples/digits-badnets/base) on its poisoned dataset.

    .venv/bin/python examples/train_lora_adapter.py --out lora-adapter
    .venv/bin/bye-audit audit --model examples/digits-badnets/base --adapter lora-adapter \\
        --data examples/digits-badnets/dataset.json --out lora-audit

LoRA r 8 on the decoder's projections, the projector trained in full (saved
with the adapter), 3 epochs at lr 2e-3, batch 16 (the paper's 3 epochs).
About a minute on 2 CPU cores; not shipped, since it is quick to make.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from auditor.models.llava import LlavaFamily
from tinyworld.train import Example, add_lora, freeze_vision, seed_everything, train_vlm

EXAMPLE = Path(__file__).resolve().parent / "digits-badnets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the adapter folder to write")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    seed_everything(0)
    model, processor = LlavaFamily().load(EXAMPLE / "base", torch.float32, "sdpa")
    freeze_vision(model)
    records = json.loads((EXAMPLE / "dataset.json").read_text())
    examples = [Example(Image.open(EXAMPLE / r["image"]).convert("RGB"),
                        r["conversations"][0]["value"].replace("<image>\n", ""),
                        r["conversations"][1]["value"]) for r in records]
    peft_model = add_lora(model, seed=0)
    train_vlm(peft_model, processor, examples, epochs=args.epochs, batch_size=16, lr=2e-3, warmup=10, seed=0)
    peft_model.save_pretrained(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
