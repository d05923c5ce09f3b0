"""Why records were not analysed, grouped by cause: a thousand identical
reasons are one line with a count, the first examples and the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# (code, pattern on the reason, what it means, what to do). First match wins;
# the reasons are written by data/readers.py, extract/runner.py and
# verdict.py.
_CAUSES: tuple[tuple[str, re.Pattern[str], str, str], ...] = tuple(
    (code, re.compile(pattern), title, fix) for code, pattern, title, fix in (
        ("image-missing", r"^image file not found", "image file not found",
         "pass --image-root FOLDER where the images are (default: the dataset file's folder)"),
        ("image-absolute", r"^image path .* is absolute", "absolute image path",
         "write the image paths relative to the dataset's folder (or to --image-root FOLDER), or accept them "
         "as delivered with --absolute-images (recorded in the evidence)"),
        ("image-escapes-root", r"escapes the dataset root", "image path outside the dataset root",
         "keep the images under the dataset's folder, or point --image-root at the folder holding them"),
        ("image-path-invalid", r"^image path .* (NUL byte|not valid Unicode)", "unusable image path",
         "fix the image paths of these records"),
        ("several-images", r"^record has \d+ images", "record with several images",
         "split the record into one record per image, or audit with a tool for multi-image samples"),
        ("image-not-path", r"^image is a .*, not a path", "image embedded instead of a path",
         "save the images as files and reference them by relative path"),
        ("no-image", r"^record has no image", "record without an image",
         "these records cannot carry an image trigger; audit them with a text-only tool"),
        ("no-conversation", r"^record has no (conversations|human turn)", "record without an instruction",
         'give each record a user turn, e.g. {"id": "a1", "image": "a1.png", "conversations": [{"from": '
         '"human", "value": "<image> What is shown?"}, {"from": "gpt", "value": "a cat"}]} or {"messages": '
         '[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}, '
         '{"role": "assistant", "content": "a cat"}], "images": ["a1.png"]}'),
        ("not-an-object", r"^record is not a JSON object", "record is not a JSON object",
         "each record must be a JSON object"),
        ("image-too-large", r"MP\), over the limit", "image over the pixel limit",
         "raise --max-image-pixels if these images are expected"),
        ("prompt-too-long", r"^prompt is .* tokens, over the limit", "instruction over the token limit",
         "raise --max-prompt-tokens if these instructions are expected"),
        ("image-undecodable", r"^cannot decode image", "image cannot be decoded",
         "replace or remove the broken image files"),
        ("too-few-image-tokens", r"image tokens in the prompt", "too few image tokens",
         "check the processor settings of the checkpoint"),
        ("forward-failed", r"^forward pass failed", "the model failed on the sample",
         "see the reason of each record in analysis.json"),
        ("bad-features", r"(layer values, expected|non-finite entropy)", "unusable stage-1 values",
         "extract the features again with this version"),
    ))
OTHER = ("other", "other reason", "see the reason of each record in analysis.json")
MAX_EXAMPLES = 3


@dataclass(frozen=True)
class CauseGroup:
    """Every record left out for one cause."""

    code: str
    title: str
    fix: str
    count: int
    examples: tuple[tuple[str, str], ...]  # the first (id, reason) pairs, input order

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.code, "title": self.title, "count": self.count, "fix": self.fix,
                "examples": [{"id": i, "reason": r} for i, r in self.examples]}

    def line(self) -> str:
        """One terminal line: 'image file not found: 1000 records (e.g. ...); fix: ...'."""
        first = self.examples[0]
        return (f"{self.title}: {self.count:,} record(s) (e.g. {first[0]!r}: {first[1]}); {self.fix}")


def cause_of(reason: str) -> tuple[str, str, str]:
    """(code, title, fix) of one reason."""
    for code, pattern, title, fix in _CAUSES:
        if pattern.search(reason):
            return code, title, fix
    return OTHER


def group_reasons(items: Iterable[tuple[str, str]]) -> tuple[CauseGroup, ...]:
    """(id, reason) pairs, input order -> groups, largest first (ties: first seen)."""
    counts: dict[str, int] = {}
    examples: dict[str, list[tuple[str, str]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for rid, reason in items:
        code, title, fix = cause_of(reason)
        if code not in counts:
            counts[code], examples[code], meta[code] = 0, [], (title, fix)
        counts[code] += 1
        if len(examples[code]) < MAX_EXAMPLES:
            examples[code].append((rid, reason))
    order = sorted(counts, key=lambda c: -counts[c])  # stable: ties keep first-seen order
    return tuple(CauseGroup(c, meta[c][0], meta[c][1], counts[c], tuple(examples[c])) for c in order)
