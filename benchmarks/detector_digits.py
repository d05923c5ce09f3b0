"""Clean vs poisoned fine-tunes of the digits example: `--method bye` against
`--method minority`, per seed. Resumable: every fine-tune, features file and
audit is cached under --cache and reused.

    .venv/bin/python -m benchmarks.detector_digits --seeds 0 1 2 --rates 0 0.1

Each (seed, rate) fine-tunes the cached clean base (built once, by the first
run, with seed 0) on a fresh 1,000-sample submission
(examples/build_digits_badnets.py --seed S --poison-rate R), extracts stage-1
features once, analyses them with each method and scores the flags against
the ground truth. Prints a Markdown table and writes JSON next to the cache.
About 4 minutes per fine-tune on 2 cores, plus 8 for the base.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "bye-audit"
METHODS = ("bye", "minority")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, capture_output=True, text=True)


def cell(cache: Path, seed: int, rate: float) -> list[dict]:
    run = cache / "runs" / f"seed{seed}-rate{rate:g}"
    if not (run / "model" / "config.json").is_file():
        res = _run([sys.executable, str(ROOT / "examples" / "build_digits_badnets.py"), "--seed", str(seed),
                    "--poison-rate", str(rate), "--base-dir", str(cache / "base"), "--out", str(run)])
        if res.returncode:
            raise SystemExit(f"fine-tune failed: {res.stderr[-2000:]}")
    features = run / "features.parquet"
    if not features.is_file():
        res = _run([str(BIN), "extract", "--model", str(run / "model"), "--data", str(run / "dataset.json"),
                    "--out", str(features), "--no-progress"])
        if res.returncode:
            raise SystemExit(f"extract failed: {res.stderr[-2000:]}")
    build = json.loads((run / "build_metrics.json").read_text())
    rows = []
    for method in METHODS:
        out = run / f"audit-{method}"
        if not (out / "summary.json").is_file():
            res = _run([str(BIN), "analyze", str(features), "--data", str(run / "dataset.json"), "--out",
                        str(out),
                        "--method", method])
            if res.returncode not in (0, 1, 3):
                raise SystemExit(f"analyze failed: {res.stderr[-2000:]}")
        res = _run([str(BIN), "evaluate", str(out), "--truth", str(run / "poisoned_ids.txt"), "--json"])
        m = json.loads(res.stdout)
        rows.append({"seed": seed, "rate": rate, "method": method, "verdict": m["verdict"],
                     "flagged": m["tp"] + m["fp"], "precision": m["precision"], "recall": m["recall"],
                     "f1": m["f1"], "fpr": m["fpr"], "auroc": m["auroc"],
                     "asr": build["fine_tuned_model"]["attack_success_rate"],
                     "clean_accuracy": build["fine_tuned_model"]["clean_accuracy"]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "digits")
    args = ap.parse_args()
    rows = [r for seed in args.seeds for rate in args.rates for r in cell(args.cache, seed, rate)]
    (args.cache / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| seed | poison | ASR | method | verdict | flagged | precision | recall | F1 | FPR | AUROC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        auroc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
        print(f"| {r['seed']} | {r['rate']:.0%} | {r['asr']:.2f} | {r['method']} | {r['verdict']} | "
              f"{r['flagged']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['fpr']:.3f} | "
              f"{auroc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
