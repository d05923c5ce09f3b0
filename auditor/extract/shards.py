"""Resumable stage 1: completed shards of features, kept until the run finishes.

A shard is the features of `shard_size` consecutive samples in processing
order, written atomically as `shard-NNNNNN.parquet` into a parts folder with
the run's fingerprint (model, adapter, dataset and stage-1 config digests).
Running the same command again reuses every shard whose fingerprint and
sample indices match, and computes the rest with the same batches as an
uninterrupted run, so the final file is the same.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..fileio import json_bytes, sha256_bytes, write_bytes_atomic
from .features import FeatureSet, SampleFeatures, read_features, render_features


def fingerprint(meta: dict[str, Any]) -> str:
    """Digest of what determines the features: model/adapter/dataset digests and
    the stage-1 part of the config."""
    cfg = meta.get("config", {})
    keys = ("batch_size", "dtype", "device", "attn_implementation", "entropy_eps", "allow_pickle", "shard_size",
            "per_head", "max_image_pixels", "max_prompt_tokens")
    return sha256_bytes(json_bytes({
        "model": (meta.get("model") or {}).get("sha256_tree"),
        "adapter": (meta.get("adapter") or {}).get("sha256_tree"),
        "dataset": (meta.get("dataset") or {}).get("sha256"),
        "config": {k: cfg.get(k) for k in keys},
        "backend": (meta.get("environment") or {}).get("backend"),  # torch, or the graph and provider
        "tool": meta.get("tool"),
    }))


def shard_path(parts: Path, n: int) -> Path:
    return parts / f"shard-{n:06d}.parquet"


def load_shard(parts: Path, n: int, print_: str, indices: list[int]) -> list[SampleFeatures] | None:
    """The rows of shard `n` when it exists, belongs to this run and holds exactly
    `indices`; None otherwise (then it is recomputed)."""
    path = shard_path(parts, n)
    if not path.is_file():
        return None
    try:
        fs = read_features(path)
    except Exception:  # noqa: BLE001 - a damaged shard is simply recomputed
        return None
    if fs.meta.get("fingerprint") != print_ or sorted(r.index for r in fs.rows) != sorted(indices):
        return None
    return list(fs.rows)


def render_shard(print_: str, rows: list[SampleFeatures]) -> bytes:
    return render_features(FeatureSet(tuple(rows), {"fingerprint": print_}))


def save_shard(parts: Path, n: int, print_: str, rows: list[SampleFeatures] | bytes) -> None:
    """Write shard `n` (its rows, or `render_shard` bytes made elsewhere, e.g. by a Ray worker)."""
    parts.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(shard_path(parts, n), rows if isinstance(rows, bytes) else render_shard(print_, rows))


def clear(parts: Path) -> None:
    """Remove the parts folder once the final features file is written."""
    shutil.rmtree(parts, ignore_errors=True)
