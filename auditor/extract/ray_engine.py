"""Stage 1 on a Ray cluster (`--engine ray`): the shards and batches of one
process, mapped by a Ray Data actor pool.

Ray Data holds one row per shard still to compute (its samples: index, id,
prompt, answer, image path); each actor of the pool loads the model once (torch or
ONNX backend) and turns a shard into its features, returned as the same
Parquet bytes the single-process path writes. The driver saves each shard as
it arrives in the run's parts folder, so a rerun after the driver died
resumes from them; Ray restarts a dead worker and retries its shard (saving a
shard twice writes the same bytes). The features file is then assembled
from the shards exactly as in one process.

Workers read the model, adapter, graph and images at the driver's paths:
on a multi-node cluster they must be on a shared filesystem (docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Stage1Config
from ..data import Dataset, Sample
from ..errors import AuditInputError
from .backend import load
from ..features import SampleFeatures
from .runner import plan_shards, shard_features, skipped_rows
from .shards import Journal, render_shard

RAY_INSTALL = "pip install 'bye-audit[ray]'"


def import_ray() -> Any:
    # Ray Data's notices (progress bars off, execution finished) would interleave with the CLI's output.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    # Ray's core logs a generic notice about actor restarts at error level on
    # the driver's stderr; failures reach the CLI as exceptions anyway.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part we need
    except ImportError:
        raise AuditInputError(f"--engine ray needs Ray Data: {RAY_INSTALL}") from None
    return ray


class ShardWorker:
    """One actor of the pool: the model loaded once, then whole shards."""

    def __init__(self, load_args: dict[str, Any], run_print: str, threads: int):
        import torch

        torch.set_num_threads(max(1, threads))
        self.config = Stage1Config(**load_args["stage1"])
        if self.config.backend == "onnx" and self.config.threads == 0:
            # ONNX Runtime would take every core of the node, in each actor
            self.config = replace(self.config, threads=max(1, threads))
        opt = {k: None if load_args.get(k) is None else Path(load_args[k])
               for k in ("adapter_dir", "onnx_path", "base_dir")}
        self.loaded = load(Path(load_args["model_dir"]), self.config, opt["adapter_dir"], opt["onnx_path"],
                           opt["base_dir"])
        self.run_print = run_print

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards, blobs, counts = [], [], []
        for n, index, ids, prompts, answers, later, images in zip(
                batch["shard"], batch["index"], batch["id"], batch["prompt"], batch["answer"], batch["later"],
                batch["image"]):
            samples = [Sample(int(i), str(sid), str(img), str(p), str(a),
                              later=tuple((str(u), str(r)) for u, r in json.loads(str(t))))
                       for i, sid, p, a, t, img in zip(index, ids, prompts, answers, later, images)]
            rows = shard_features(self.loaded, samples, self.config)
            shards.append(int(n))
            blobs.append(render_shard(self.run_print, rows))
            counts.append(len(samples))
        return {"shard": np.array(shards), "rows": np.array(blobs, dtype=object), "samples": np.array(counts)}


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address`, or start a local one; True when we started Ray here."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **quiet)
    except Exception as e:  # noqa: BLE001 - an unreachable or refusing cluster
        where = f"the cluster at {address}" if address else "a local Ray cluster"
        raise AuditInputError(f"--engine ray: cannot start or join {where}: {str(e).strip()[:200]}") from None
    return True


def extract_features_ray(dataset: Dataset, config: Stage1Config, load_args: dict[str, Any], journal: Journal,
                         address: str | None = None,
                         on_progress: Callable[[int], None] | None = None) -> list[SampleFeatures]:
    """Features for every record, input order, as `runner.extract_features` gives them.

    `load_args`: model_dir, adapter_dir, onnx_path, base_dir (str or None) and the config
    as a dict: what each worker needs to load the model itself. Shards are
    kept (and resumed) through `journal`.
    """
    ray = import_ray()
    plan = plan_shards(dataset, config)
    done: dict[int, list[SampleFeatures]] = {}
    for n, shard in enumerate(plan):
        rows = journal.load(n, shard)
        if rows is not None:  # kept by an interrupted run (the journal reports it)
            done[n] = rows
    todo = [n for n in range(len(plan)) if n not in done]
    if todo:
        done.update(_run(ray, plan, todo, config, load_args, journal, address, on_progress))
    missing = [n for n in todo if n not in done]
    if missing:
        raise AuditInputError(f"--engine ray: shard {missing[0]} was not returned by the workers; rerun the "
                              "same command to compute what is missing")
    out = skipped_rows(dataset)
    for rows in done.values():
        out.update((r.index, r) for r in rows)
    return [out[i] for i in sorted(out)]


def _run(ray: Any, plan: list, todo: list[int], config: Stage1Config, load_args: dict[str, Any],
         journal: Journal,
         address: str | None, on_progress: Callable[[int], None] | None) -> dict[int, list[SampleFeatures]]:
    """The shards `todo` computed on the cluster (each saved through `journal` as it arrives)."""
    started = _connect(ray, address)
    done: dict[int, list[SampleFeatures]] = {}
    try:
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI shows its own, on the driver
        ctx.print_on_execution_start = False
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // config.workers)
        items = [{"shard": n, "index": [s.index for s in plan[n]], "id": [s.id for s in plan[n]],
                  "prompt": [s.prompt for s in plan[n]], "answer": [s.answer for s in plan[n]],
                  # JSON: a column of ragged tuples would not survive Arrow's typing
                  "later": [json.dumps(s.later) for s in plan[n]],
                  "image": [s.image for s in plan[n]]}
                 for n in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(ShardWorker, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=config.workers),
                            num_cpus=cpus,
                            num_gpus=config.gpus_per_worker or None,
                            fn_constructor_kwargs={"load_args": load_args, "run_print": journal.run_print,
                                                   "threads": cpus})
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for n, blob, k in zip(batch["shard"], batch["rows"], batch["samples"]):
                done[int(n)] = journal.save(int(n), bytes(blob))
                if on_progress:
                    on_progress(int(k))
    except ray.exceptions.RayError as e:
        first = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
        raise AuditInputError(f"--engine ray: stage 1 failed on the cluster ({first}); completed shards are "
                              f"kept in {journal.parts}: rerun the same command to resume") from None
    finally:
        if started:
            ray.shutdown()
    return done
