"""Does a trigger implant? One poisoned submission of the detection benchmark,
fine-tuned with a given recipe, and its clean accuracy and attack success rate.

    .venv/bin/python -m benchmarks.implant --trigger blend --set alpha=0.2 --epochs 12

The cell is the detection grid's (same 500 samples, same poisoned indices, same
base from the cache); only the recipe (--epochs, --lr) and the trigger's
parameters (--set NAME=VALUE, e.g. fraction=0.1875 or strength=2) change. It
answers the question a benchmark has to settle before it measures detection:
is there a backdoor in the fine-tune at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from .cells import ROOT, Cell, submission


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="digits", choices=["digits", "shapes"])
    ap.add_argument("--family", default="llava", choices=["llava", "qwen2_vl"])
    ap.add_argument("--trigger", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a trigger parameter (a number)")
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the benchmark's recipe")
    ap.add_argument("--lr", type=float, default=None, help="default: the benchmark's recipe")
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "detection")
    args = ap.parse_args(argv)

    import tinyworld.triggers as triggers
    from tinyworld.world import WORLD_FAMILIES, TASKS, FineTune, build_base, fine_tune, measure

    if args.trigger not in triggers.TRIGGERS:
        raise SystemExit(f"--trigger {args.trigger}: unknown; choose from {', '.join(triggers.TRIGGERS)}")
    trigger = triggers.TRIGGERS[args.trigger]
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(trigger)} or name == "name":
            raise SystemExit(f"--set {item}: {type(trigger).__name__} has no parameter {name!r}")
        try:
            trigger = dataclasses.replace(trigger, **{name: type(getattr(trigger, name))(float(value))})
        except ValueError:
            raise SystemExit(f"--set {item}: {value!r} is not a number") from None
    how = FineTune()
    how = dataclasses.replace(how,
                              **{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr))
                                 if v is not None})
    cell = Cell(args.task, args.family, args.trigger, args.rate, args.seed)
    task, family = TASKS[args.task], WORLD_FAMILIES[args.family]
    base = build_base(task, family, args.cache / "bases" / f"{args.task}-{args.family}")
    with tempfile.TemporaryDirectory() as tmp:
        examples, _ = submission(cell, Path(tmp), trigger)
        t = time.time()
        model, processor = fine_tune(base, family, examples, how, seed=args.seed, log=lambda _: None)
        seconds = time.time() - t
    result = {"cell": dataclasses.asdict(cell), "trigger": dataclasses.asdict(trigger),
              "fine_tune": dataclasses.asdict(how), "fine_tune_seconds": round(seconds, 1),
              **measure(model, processor, family, task, trigger, args.seed)}
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
