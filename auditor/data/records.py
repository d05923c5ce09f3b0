"""Typed records of a dataset under audit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple


class Sample(NamedTuple):
    """One record as the auditor sees it.

    `prompt` is the user instruction without the image placeholder; `answer`
    the first answer turn (the answer channel scores it and `later`'s). A
    sample with a `skip_reason` is counted and reported, never analysed. Immutable like the
    other records, but a named tuple: a million are built per dataset, and
    it builds in half the time of a frozen dataclass.
    """

    index: int  # position in the input file
    id: str
    image: str | None  # the image file, resolved under the image root (a string: one Path per record is slow)
    prompt: str
    answer: str
    skip_reason: str | None = None
    # The conversation's later turns, in order: (the user's text, the
    # assistant's answer) after the first answer; empty for a one-turn record.
    later: tuple[tuple[str, str], ...] = ()
    skip_cause: str | None = None  # the skip's code (auditor.causes.Cause)

    @property
    def ok(self) -> bool:
        return self.skip_reason is None

    @property
    def image_path(self) -> Path | None:
        return None if self.image is None else Path(self.image)


class LineRecords(Sequence[Any]):
    """A JSONL input's records, parsed again from their lines when asked for:
    a million parsed records would hold gigabytes for the few a copy needs."""

    def __init__(self, lines: tuple[str, ...]):
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [json.loads(line) for line in self.lines[i]]
        return json.loads(self.lines[i])


@dataclass(frozen=True)
class Dataset:
    """A parsed dataset: the verbatim records (input order) and their samples."""

    path: Path
    format: str  # "llava-json" | "jsonl" | "parquet"
    image_root: Path
    records: Sequence[Any]  # a tuple, or LineRecords for JSONL
    samples: tuple[Sample, ...]
    table: Any = None  # the pyarrow Table of a Parquet input, so copies keep its schema

    @property
    def n_skipped(self) -> int:
        return sum(not s.ok for s in self.samples)
