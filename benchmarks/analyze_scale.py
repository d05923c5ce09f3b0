"""`bye-audit analyze` at scale: synthetic features of N samples x L layers.

    .venv/bin/python benchmarks/analyze_scale.py --samples 1000000 --layers 32 [--method minority] \
        [--repeats 3] [--baseline-tree DIR]

Writes a features file (correlated per-layer entropies in (0, 1), 5% of the
samples a compact group at higher entropy in a few layers) and a matching
JSONL dataset whose records all point at one shared real PNG (the images only
matter to the report). Then
runs `analyze` in a child process and prints its wall time and peak RSS
(the target: <= 60 s and <= 4 GiB at 1,000,000 x 32). With
`--repeats N` it runs N times on the same inputs and prints the median: on a
shared machine one run can be 25% off another. With `--baseline-tree DIR` (a
checkout of another commit) each run of this tree follows one of that tree's,
and the ratio of the medians is what the change is worth.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, n: int, layers: int, seed: int = 0) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from auditor.features import FEATURES_SCHEMA_VERSION, ROW_GROUP, SCHEMA

    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 2))
    x = 0.6 + 0.05 * latent @ rng.normal(size=(2, layers)) + 0.03 * rng.standard_normal((n, layers))
    group = rng.random(n) < 0.05
    x[np.ix_(group, range(layers // 2, layers // 2 + 3))] = 0.95
    x = np.clip(x, 0.01, 0.99)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(folder / "i.png")
    with open(folder / "data.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"s{i}", "image": "i.png", "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"},
                {"from": "gpt", "value": "a"}]}) + "\n")
    # The features file built as columns (what `extract` writes, row for row).
    per_layer = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * layers, pa.int32()), pa.array(x.ravel()))
    empty = pa.array([[]] * n, pa.list_(pa.float64()))
    cols = {"index": pa.array(np.arange(n)), "id": pa.array([f"s{i}" for i in range(n)]),
            "status": pa.array(["ok"] * n), "reason": pa.array([None] * n, pa.string()),
            "n_image_tokens": pa.array(np.full(n, 64, np.int32)), "entropy": per_layer,
            "entropy_norm": per_layer,
            "mass_image": empty, "mass_text": empty, "mass_rest": empty,
            "entropy_heads": pa.array([[]] * n, pa.list_(pa.list_(pa.float64()))),
            # no model here: the answers are not scored
            "answer_tokens": pa.nulls(n, pa.int32()),
            **{k: pa.nulls(n, pa.float64()) for k in ("answer_nll", "answer_first_nll", "base_answer_nll",
                                                       "base_first_nll")},
            "answer_missing": pa.array(["not scored: synthetic features"] * n),
            "later_tokens": pa.array([[]] * n, pa.list_(pa.int32())), "later_nll": empty,
            "base_later_nll": empty, "later_missing": pa.nulls(n, pa.string()),
            "answers_truncated": pa.nulls(n, pa.int32()), "cause": pa.nulls(n, pa.string())}
    meta = {"schema_version": FEATURES_SCHEMA_VERSION, "n_layers": layers}
    table = pa.table(cols, schema=SCHEMA.with_metadata({b"bye_audit": json.dumps(meta)}))
    pq.write_table(table, folder / "features.parquet", compression="zstd", row_group_size=ROW_GROUP)
    return folder / "features.parquet", folder / "data.jsonl"


def run_analyze(tree: Path, features: Path, data: Path, out: Path, method: str) -> tuple[float, float, int,
                                                                                         str]:
    """`bye-audit analyze` of the `auditor` package under `tree`, in a child
    process: (wall seconds, peak RSS MiB of that process, exit code, the
    verdict line, or the last line on stderr when there is none)."""
    code = "import sys; from auditor.cli import main; sys.argv[0] = 'bye-audit'; main()"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", code, "analyze", str(features), "--data", str(data),
                                  "--out", str(out), "--method", method], stdout=log, stderr=err,
                                 env=env, cwd=tree)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t
        log.seek(0)
        err.seek(0)
        first = (log.read().splitlines() or err.read().splitlines()[-1:] or [""])[0]
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--method", default="minority")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="a checkout of another commit (git worktree add DIR COMMIT): run its analyze on the "
                         "same inputs before each run of this one, and print the ratio of the medians")
    args = ap.parse_args()
    trees = {"this": Path(__file__).resolve().parents[1]}
    if args.baseline_tree is not None:
        trees = {"baseline": args.baseline_tree.resolve(), **trees}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        features, data = write_inputs(folder, args.samples, args.layers)
        print(f"inputs written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        walls: dict[str, list[float]] = {name: [] for name in trees}
        peaks: dict[str, float] = {name: 0.0 for name in trees}
        for k in range(args.repeats):
            for name, tree in trees.items():  # alternating, so both see the same machine load
                out = folder / f"out-{name}-{k}"
                wall, peak, code, first = run_analyze(tree, features, data, out, args.method)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
                print(f"{name} run {k + 1}: {wall:.1f} s, peak RSS {peak:.0f} MiB, exit {code}: {first}",
                      flush=True)
                shutil.rmtree(out, ignore_errors=True)
        for name in trees:
            print(f"analyze {args.samples} x {args.layers} ({args.method}), {name}: median "
                  f"{statistics.median(walls[name]):.1f} s of {args.repeats} run(s) "
                  f"({', '.join(f'{w:.1f}' for w in walls[name])}), peak RSS {peaks[name]:.0f} MiB")
        if "baseline" in trees:
            ratio = statistics.median(walls["this"]) / statistics.median(walls["baseline"])
            print(f"this / baseline (medians): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
