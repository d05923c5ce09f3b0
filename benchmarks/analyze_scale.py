"""`bye-audit analyze` at scale: synthetic features of N samples x L layers.

    .venv/bin/python benchmarks/analyze_scale.py --samples 1000000 --layers 32 [--method minority]

Writes a features file (correlated per-layer entropies in (0, 1), 5% of the
samples a compact group at higher entropy in a few layers) and a matching
JSONL dataset whose records all point at one shared real PNG (the images only
matter to the report). Then
runs `analyze` in a child process and prints its wall time and peak RSS
(target for issue #4: <= 60 s and <= 4 GiB at 1,000,000 x 32).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, n: int, layers: int, seed: int = 0) -> tuple[Path, Path]:
    from PIL import Image

    from auditor.extract.features import FeatureSet, SampleFeatures, render_features

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
    rows = tuple(SampleFeatures(i, f"s{i}", "ok", None, 64, tuple(v), tuple(v)) for i, v in enumerate(x.tolist()))
    (folder / "features.parquet").write_bytes(render_features(FeatureSet(rows, {"n_layers": layers})))
    return folder / "features.parquet", folder / "data.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--method", default="minority")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        features, data = write_inputs(folder, args.samples, args.layers)
        print(f"inputs written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        res = subprocess.run([str(Path(sys.executable).parent / "bye-audit"), "analyze", str(features), "--data",
                              str(data), "--out", str(folder / "out"), "--method", args.method],
                             capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(res.stdout.splitlines()[0] if res.stdout else res.stderr[-500:])
        print(f"analyze {args.samples} x {args.layers} ({args.method}): {wall:.1f} s, peak RSS {peak:.0f} MiB, "
              f"exit {res.returncode}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
