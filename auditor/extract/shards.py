"""Resumable stage 1: completed shards of features, kept until the run finishes.

A shard is the features of `shard_size` consecutive samples in processing
order, written atomically as `shard-NNNNNN.parquet` into a parts folder with
the run's fingerprint (model, adapter, dataset and stage-1 config digests).
Each shard's journal entry (`shard-NNNNNN.json`: SHA-256, fingerprint, sample
indices and ids) is written right after it. Running the same command again
reuses every shard that matches its entry and this run's plan (Journal), and
computes the rest with the same batches as an uninterrupted run, so the final
file is the same.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import Stage1Config
from ..features.provenance import Provenance
from ..fileio import json_bytes, sha256_bytes, write_bytes_atomic
from ..features import FeatureSet, SampleFeatures, read_features_bytes, render_features


def fingerprint(provenance: Provenance, stage1: Stage1Config) -> str:
    """Digest of what determines the features: model/adapter/base/dataset digests,
    the backend and every stage-1 setting (a new one counts without being
    listed here) but `resume`, which says whether to trust old shards, not
    what they hold, and `base_sha256`, a check on the base whose digest is here."""
    p = provenance
    return sha256_bytes(json_bytes({
        "model": None if p.model is None else p.model.sha256_tree,
        "adapter": None if p.adapter is None else p.adapter.sha256_tree,
        "base": None if p.base is None else [p.base.how, p.base.sha256_tree],
        "dataset": None if p.dataset is None else p.dataset.sha256,
        "config": {k: v for k, v in asdict(stage1).items() if k not in ("resume", "base_sha256")},
        # torch, or the graph and provider
        "backend": None if p.environment is None else dict(p.environment.backend),
        "tool": None if p.tool is None else dict(p.tool),
    }))


def shard_path(parts: Path, n: int) -> Path:
    return parts / f"shard-{n:06d}.parquet"


def journal_path(parts: Path, n: int) -> Path:
    """Shard n's journal entry: its SHA-256, fingerprint and sample ids, written
    right after the shard; a shard without one (e.g. killed in between) is not trusted."""
    return parts / f"shard-{n:06d}.json"


class Journal:
    """The parts folder of one run: which shards were reused, which were
    discarded and why. What it trusts (docs/evidence.md): a shard whose
    SHA-256, fingerprint and (index, id) pairs equal its journal entry and the
    samples this run would put in it. Someone able to rewrite both a shard and
    its entry in the parts folder is not caught; `--no-resume` trusts nothing there."""

    def __init__(self, parts: Path, run_print: str, resume: bool = True,
                 on_resumed: Callable[[int], None] | None = None):
        """`on_resumed(n)` hears each trusted shard's sample count (progress
        that this run did not compute)."""
        self.parts, self.run_print, self.on_resumed = Path(parts), run_print, on_resumed
        self.resumed: list[int] = []
        self.discarded: list[dict[str, Any]] = []
        if not resume:
            clear(self.parts)

    def load(self, n: int, samples: Sequence[Any]) -> list[SampleFeatures] | None:
        """The rows of shard `n` when it can be trusted for `samples` (each with
        .index and .id); None otherwise (then it is recomputed)."""
        path = shard_path(self.parts, n)
        if not path.is_file():
            return None
        reason, rows = self._check(n, path, samples)
        if reason is not None:
            self.discarded.append({"shard": n, "reason": reason})
            return None
        self.resumed.append(n)
        if self.on_resumed:
            self.on_resumed(len(rows))
        return rows

    def _check(self, n: int, path: Path, samples: Sequence[Any]) -> tuple[str | None, list[SampleFeatures]]:
        try:
            entry = json.loads(journal_path(self.parts, n).read_text(encoding="utf-8"))
            data = path.read_bytes()
        except (OSError, ValueError, RecursionError):
            return "no readable journal entry", []
        wanted = sorted([int(s.index), str(s.id)] for s in samples)
        if not isinstance(entry, dict) or entry.get("fingerprint") != self.run_print:
            return "written by another run (model, dataset, or stage-1 settings differ)", []
        if entry.get("samples") != wanted:
            return "holds other samples than this run's shard", []
        if entry.get("sha256") != sha256_bytes(data):
            return "its SHA-256 differs from the journal's: changed after it was written", []
        try:
            fs = read_features_bytes(data, path)
        except Exception:  # noqa: BLE001 - a damaged shard is recomputed
            return "unreadable", []
        if fs.meta.get("fingerprint") != self.run_print or sorted([r.index, r.id] for r in fs.rows) != wanted:
            return "its rows are not the journal's samples", []
        return None, list(fs.rows)

    def save(self, n: int, rows: list[SampleFeatures] | bytes) -> list[SampleFeatures]:
        """Write shard `n` (its rows, or `render_shard` bytes made elsewhere, e.g.
        by a Ray worker), then its journal entry; its rows."""
        if isinstance(rows, bytes):
            data, rows = rows, list(read_features_bytes(rows, shard_path(self.parts, n)).rows)
        else:
            data = render_shard(self.run_print, rows)
        samples = sorted([r.index, r.id] for r in rows)
        self.parts.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(shard_path(self.parts, n), data)
        write_bytes_atomic(journal_path(self.parts, n), json_bytes(
            {"fingerprint": self.run_print, "samples": samples, "sha256": sha256_bytes(data)}))
        return rows

    def summary(self) -> dict[str, Any]:
        """What was reused: recorded in analysis.json and the manifest."""
        return {"resumed_shards": sorted(self.resumed), "discarded_shards": self.discarded}


def render_shard(print_: str, rows: list[SampleFeatures]) -> bytes:
    return render_features(FeatureSet(tuple(rows), {"fingerprint": print_}))


def clear(parts: Path) -> None:
    """Remove the parts folder once the final features file is written."""
    shutil.rmtree(parts, ignore_errors=True)
