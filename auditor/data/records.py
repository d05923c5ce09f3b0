"""Typed records of a dataset under audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One record as the auditor sees it.

    `prompt` is the user instruction without the image placeholder; the answer
    is kept for the report only (BYE never uses it). A sample with a
    `skip_reason` is counted and reported, never analysed.
    """

    index: int  # position in the input file
    id: str
    image_path: Path | None
    prompt: str
    answer: str
    skip_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.skip_reason is None


@dataclass(frozen=True)
class Dataset:
    """A parsed dataset: the verbatim records (input order) and their samples."""

    path: Path
    format: str  # "llava-json" | "jsonl" | "parquet"
    image_root: Path
    records: tuple[Any, ...]
    samples: tuple[Sample, ...]
    table: Any = None  # the pyarrow Table of a Parquet input, so copies keep its schema
    lines: tuple[str, ...] | None = None  # a JSONL input's record lines, so copies keep them byte for byte

    @property
    def n_skipped(self) -> int:
        return sum(not s.ok for s in self.samples)
