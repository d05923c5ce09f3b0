"""Stage-1 throughput on a local Ray cluster (1 and 2 workers) against one process.

    .venv/bin/python benchmarks/ray_scaling.py [--samples 1000 96] [--workers 1 2]

Same dataset, same batches and shards (batch 8, shards of 32) for every run.
`local` is `extract_features` in this process (torch, 2 threads); `ray xN` is
`extract_features_ray` with N actors on a local cluster started beforehand
(as a real cluster would be), each actor loading the model itself (included
in the time) with 2/N threads. Besides the whole run, "steady" counts only
what comes after the first completed shard (actor start-up and model loading
excluded: what a long run converges to). Models: the bundled example's
fine-tune and the LLaVA-1.5-shaped one of benchmarks/onnx_throughput.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from onnx_throughput import prepare


class Clock:
    """Progress callback: (samples/s over the whole run, samples/s after the first shard)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.ticks: list[tuple[float, int]] = []

    def tick(self, n: int) -> None:
        self.ticks.append((time.perf_counter(), n))

    def rates(self) -> tuple[float, float]:
        end, total = self.ticks[-1][0], sum(n for _, n in self.ticks)
        first_t, first_n = self.ticks[0]
        return total / (end - self.start), (total - first_n) / (end - first_t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, nargs=2, default=[1000, 160],
                    help="samples for the example model and for the LLaVA-1.5-shaped one")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import ray
    import torch

    from auditor.config import Stage1Config
    from auditor.data import read_dataset
    from auditor.extract.ray_engine import extract_features_ray
    from auditor.extract.shards import Journal
    from auditor.extract.runner import extract_features
    from auditor.pipeline import load

    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = prepare(Path(tmp))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            for (name, (model_dir, data)), n in zip(models.items(), args.samples):
                dataset = read_dataset(data)
                dataset = replace(dataset, samples=dataset.samples[:n])
                config = Stage1Config(batch_size=8, shard_size=32, device="cpu")
                loaded = load(model_dir, config)
                extract_features(loaded, replace(dataset, samples=dataset.samples[:8]), config)  # warm-up
                clock = Clock()
                extract_features(loaded, dataset, config, on_progress=clock.tick)
                base = clock.rates()
                rows.append((name, "local", n, *base, 1.0, 1.0))
                for w in args.workers:
                    cfg = replace(config, engine="ray", workers=w)
                    load_args = {"model_dir": str(model_dir), "adapter_dir": None, "onnx_path": None,
                                 "stage1": asdict(cfg)}
                    clock = Clock()
                    journal = Journal(Path(tmp) / f"parts-{name}-{w}", f"bench-{w}")
                    extract_features_ray(dataset, cfg, load_args, journal, on_progress=clock.tick)
                    whole, steady = clock.rates()
                    rows.append((name, f"ray x{w}", n, whole, steady, whole / base[0], steady / base[1]))
        finally:
            ray.shutdown()
    print("2-core machine; batch 8, shards of 32; whole = including each actor loading the model")
    print("| model | engine | samples | samples/s, whole | samples/s, steady | whole vs local | steady vs "
          "local |")
    print("|---|---|---|---|---|---|---|")
    for name, engine, n, whole, steady, rw, rs in rows:
        print(f"| {name} | {engine} | {n} | {whole:.1f} | {steady:.1f} | {rw:.2f}x | {rs:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
