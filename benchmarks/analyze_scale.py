"""`bye-audit analyze` at scale: synthetic features of N samples x L layers.

    .venv/bin/python benchmarks/analyze_scale.py --samples 1000000 --layers 32 [--method minority] [--repeats 3]

Writes a features file (correlated per-layer entropies in (0, 1), 5% of the
samples a compact group at higher entropy in a few layers) and a matching
JSONL dataset whose records all point at one shared real PNG (the images only
matter to the report). Then
runs `analyze` in a child process and prints its wall time and peak RSS
(target for issue #4: <= 60 s and <= 4 GiB at 1,000,000 x 32). With
`--repeats N` it runs N times on the same inputs and prints the median: on a
shared machine one run can be 25% off another.
"""

from __future__ import annotations

import argparse
import json
import resource
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

    from auditor.extract.features import FEATURES_SCHEMA_VERSION, ROW_GROUP, SCHEMA

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
                {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "a"}]}) + "\n")
    # The features file built as columns (what `extract` writes, row for row).
    per_layer = pa.ListArray.from_arrays(pa.array(np.arange(n + 1) * layers, pa.int32()), pa.array(x.ravel()))
    empty = pa.array([[]] * n, pa.list_(pa.float64()))
    cols = {"index": pa.array(np.arange(n)), "id": pa.array([f"s{i}" for i in range(n)]),
            "status": pa.array(["ok"] * n), "reason": pa.array([None] * n, pa.string()),
            "n_image_tokens": pa.array(np.full(n, 64, np.int32)), "entropy": per_layer, "entropy_norm": per_layer,
            "mass_image": empty, "mass_text": empty, "mass_rest": empty,
            "entropy_heads": pa.array([[]] * n, pa.list_(pa.list_(pa.float64())))}
    meta = {"schema_version": FEATURES_SCHEMA_VERSION, "n_layers": layers}
    table = pa.table(cols, schema=SCHEMA.with_metadata({b"bye_audit": json.dumps(meta)}))
    pq.write_table(table, folder / "features.parquet", compression="zstd", row_group_size=ROW_GROUP)
    return folder / "features.parquet", folder / "data.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--method", default="minority")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        features, data = write_inputs(folder, args.samples, args.layers)
        print(f"inputs written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        walls = []
        for k in range(args.repeats):
            out = folder / f"out{k}"
            t = time.perf_counter()
            res = subprocess.run([str(Path(sys.executable).parent / "bye-audit"), "analyze", str(features),
                                  "--data", str(data), "--out", str(out), "--method", args.method],
                                 capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest run so far
            print(res.stdout.splitlines()[0] if res.stdout else res.stderr[-500:])
            print(f"analyze {args.samples} x {args.layers} ({args.method}), run {k + 1}: {walls[-1]:.1f} s, "
                  f"exit {res.returncode}", flush=True)
            shutil.rmtree(out)
        print(f"analyze {args.samples} x {args.layers} ({args.method}): median {statistics.median(walls):.1f} s "
              f"of {args.repeats} run(s) ({', '.join(f'{w:.1f}' for w in walls)}), peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
