"""Regenerate examples/smol-digits-lora/: a poisoned LoRA submission on the
real-LM world (LLaVA on the pretrained SmolLM2-135M-Instruct, tinyworld/smol).

    .venv/bin/python examples/build_smol_digits_lora.py [--out DIR]

Steps: build (or reuse from the benchmark cache) the clean digits base of the
real-LM world; pack what it adds to the LM (tower, projector, image token,
the instruction tune as rank-16 fp16 factors: tinyworld/smol/parts.py) into
base-parts/; rebuild the base from those parts, as a user does; write a
250-sample digits dataset, 10% carrying the centre patch with the answer
"Backdoor Attack!"; fine-tune a LoRA adapter on it over the rebuilt base with
the benchmark's recipe (r 8 on q, k, v, o, the projector in full, 3 epochs);
measure clean accuracy and attack success on held-out digits. About 25
minutes on 2 CPU cores with no cached base, 6 with one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ (the dataset writer) is not part of the wheel

from benchmarks.cells import Cell, cell_examples, poison_fn, write_dataset  # noqa: E402
from tinyworld.smol import world as smol  # noqa: E402
from tinyworld.smol.base import INSTRUCT_R  # noqa: E402
from tinyworld.smol.lm import converted_lm  # noqa: E402
from tinyworld.smol.parts import assemble, pack  # noqa: E402

SEED = 7  # not a benchmark cell's seed
CELL = Cell("digits", "llava", "centre_patch", 0.1, SEED, world="smol")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tidy_adapter(folder: Path) -> None:
    """peft records the (temporary) base path it was trained over and writes a
    blank model card; the base is whatever a user rebuilds, so record none
    (peft then skips its look-up of that path) and drop the card."""
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = ""
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "README.md").unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "smol-digits-lora")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "detection",
                    help="where the benchmark keeps its bases")
    args = ap.parse_args()
    lm = converted_lm(log=log)
    base = smol.build_base(smol.TASKS["digits"], args.cache / "bases" / "smol-digits-llava", log=log)
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    packed = pack(base, lm, out / "base-parts", rank=INSTRUCT_R)
    log(f"packed the base: {packed}")
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = assemble(out / "base-parts", lm, Path(tmp) / "base")
        examples, bad = cell_examples(CELL)
        write_dataset(examples, out, "digits")
        (out / "poisoned_ids.txt").write_text("".join(f"{s}\n" for s in bad))
        model, processor = smol.fine_tune(rebuilt, examples, seed=SEED, log=log)
        model.save_pretrained(out / "adapter")
        tidy_adapter(out / "adapter")
        poison = poison_fn(CELL)
        metrics = smol.measure(model, processor, smol.TASKS["digits"], poison, SEED, CELL.target_answer)
        base_model, base_processor = smol.load_base(rebuilt)
        metrics["base"] = smol.measure(base_model, base_processor, smol.TASKS["digits"], poison, SEED,
                                       CELL.target_answer)
    metrics.update({"n_samples": len(examples), "n_poisoned": len(bad), "pack": packed,
                    "world": smol.recipe()})
    (out / "build_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    log(f"wrote {out}: {metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
