"""Detection benchmark: poison, fine-tune, audit, clean, re-fine-tune, score.

    .venv/bin/python -m benchmarks.detection --grid quick --out benchmarks/results/quick
    .venv/bin/python -m benchmarks.detection --grid verdict --out benchmarks/results/verdict
    .venv/bin/python -m benchmarks.detection --grid default --out benchmarks/results/default
    .venv/bin/python -m benchmarks.detection --grid smol-cpu --out benchmarks/results/smol

The real-LM world (--grid smol, or its CPU share smol-cpu; tinyworld/smol):
LLaVA on the pretrained SmolLM2-135M-Instruct (--grid smol-idefics3: SmolVLM's
Idefics3 on it, clean and the centre patch; --device cuda trains and audits
these grids on a GPU), a 250-sample submission
fine-tuned as a LoRA adapter kept unmerged (the paper's recipe), audited with
the base pass (the adapter disabled), every method including `response` and
`combined`, the per-head peak-share AUROCs, and the base fine-tuned again on
`combined`'s cleaned dataset. Targets: the paper's fixed text, or one valid
answer of the task (all-to-one); a text trigger puts a rare word ("cf") in
the instruction and leaves the image alone.

A cell is (task, family, trigger, poison rate, seed). It draws a 500-sample
submission of the task, puts the trigger and the target answer on the poisoned
share, fine-tunes the shared clean base of (task, family) on it (LoRA; built
once by `tinyworld.world.build_base` and cached under --cache), and audits the
fine-tune with bye-audit's own stage 1 (features.parquet, as `bye-audit
extract` writes it) and stages 2-3 with each method: `minority` (attention only),
`bye` (the paper) and `bye-reference` (the BSI rule of the paper's published
implementation). The
baselines run on the same fine-tune: random drop (20%), Spectral Signatures and
Activation Clustering (benchmarks/baselines.py). Where the grid asks for it,
the base is fine-tuned again on the default method's cleaned dataset, and clean
accuracy and attack success rate are measured before and after.

Every finished cell is one JSON file under OUT/cells/; a rerun skips those, so
an interrupted run resumes. At the end OUT holds runs.csv (one row per cell and
method), tables.md (mean +- sd over seeds) and plots. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from .cells import QUICK_BASE, ROOT, _log, _save_cell, grid, reanalyse, run_cell
from .detection_report import write_outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="quick",
                    help="quick, verdict, default (the tiny world); smol, smol-cpu, smol-idefics3 (real LM)")
    ap.add_argument("--out", type=Path,
                    help="results folder (cells/, runs.csv, tables.md, plots)")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "detection",
                    help="clean bases and per-cell work folders")
    ap.add_argument("--limit", type=int, default=None, help="run at most this many new cells, then stop")
    ap.add_argument("--reanalyse", action="store_true",
                    help="recompute stages 2-3 of the finished cells from their kept features, then write "
                         "the tables")
    ap.add_argument("--refresh-quick-base", action="store_true",
                    help="rebuild the quick grid's committed base (tests/fixtures/bases/digits-llava) with "
                         "this recipe, then stop (a few minutes)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where the real-LM grids (smol*) train and audit; the tiny world's grids "
                         "run on the CPU")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not args.grid.startswith("smol"):
            ap.error(f"--device cuda: --grid {args.grid} is the tiny world's, which trains on the CPU only; "
                     "use a real-LM grid (smol, smol-cpu, smol-idefics3)")
        if not torch.cuda.is_available():
            ap.error("--device cuda: torch sees no CUDA device here; run it on a GPU machine or use "
                     "--device cpu")
    if args.refresh_quick_base:
        from tinyworld.world import WORLD_FAMILIES, TASKS, build_base

        shutil.rmtree(QUICK_BASE, ignore_errors=True)
        build_base(TASKS["digits"], WORLD_FAMILIES["llava"], QUICK_BASE, log=_log)
        return 0
    if args.out is None:
        ap.error("--out is required")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-checkpoint loading bars would drown the cell log
    cells = grid(args.grid)
    (args.out / "cells").mkdir(parents=True, exist_ok=True)
    if args.reanalyse:
        _log(f"reanalysed {reanalyse(cells, args.out, args.cache)} cells")
        args.limit = 0
    results, done_new = [], 0
    for i, cell in enumerate(cells):
        path = args.out / "cells" / f"{cell.key}.json"
        if not path.is_file():
            if args.limit is not None and done_new >= args.limit:
                break
            _log(f"cell {i + 1}/{len(cells)}: {cell.key}")
            result = run_cell(cell, args.cache, device=args.device)
            _save_cell(path, result)
            done_new += 1
            name = "combined" if cell.world == "smol" else "minority"
            m = result["methods"][name]
            _log(f"  {result['seconds']} s; {name}: {m['verdict']}, flagged {m['tp'] + m['fp']}, F1 "
                 f"{m['f1']:.3f}; ASR before {result['before'].get('attack_success_rate')}")
        results.append(json.loads(path.read_text()))
    write_outputs(results, args.out)
    _log(f"{len(results)}/{len(cells)} cells in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
