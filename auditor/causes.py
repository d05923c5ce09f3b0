"""Why records were not analysed, grouped by cause: a thousand identical
reasons are one line with a count, the first examples and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Cause(StrEnum):
    """Why a record was not analysed: given where it is decided (the reader,
    stage 1, the usable-row check, an imported dump), kept beside the reason's
    prose in the features file (`cause`), so rewording a reason never loses it."""

    IMAGE_MISSING = "image-missing"
    IMAGE_ABSOLUTE = "image-absolute"
    IMAGE_ESCAPES_ROOT = "image-escapes-root"
    IMAGE_PATH_INVALID = "image-path-invalid"
    SEVERAL_IMAGES = "several-images"
    IMAGE_NOT_PATH = "image-not-path"
    NO_IMAGE = "no-image"
    NO_CONVERSATION = "no-conversation"
    NOT_AN_OBJECT = "not-an-object"
    IMAGE_TOO_LARGE = "image-too-large"
    PROMPT_TOO_LONG = "prompt-too-long"
    PROMPT_UNTOKENISABLE = "prompt-untokenisable"
    IMAGE_UNDECODABLE = "image-undecodable"
    TOO_FEW_IMAGE_TOKENS = "too-few-image-tokens"
    FORWARD_FAILED = "forward-failed"
    BAD_FEATURES = "bad-features"
    NOT_IN_DUMP = "not-in-dump"
    OTHER = "other"  # a features file written before causes were recorded (schema < 5)


# Each cause: what it means, what to do.
ABOUT: dict[Cause, tuple[str, str]] = {
    Cause.IMAGE_MISSING: (
        "image file not found",
        "pass --image-root FOLDER where the images are (default: the dataset file's folder)"),
    Cause.IMAGE_ABSOLUTE: (
        "absolute image path",
        "write the image paths relative to the dataset's folder (or to --image-root FOLDER), or accept "
        "them as delivered with --absolute-images (recorded in the evidence)"),
    Cause.IMAGE_ESCAPES_ROOT: (
        "image path outside the dataset root",
        "keep the images under the dataset's folder, or point --image-root at the folder holding them"),
    Cause.IMAGE_PATH_INVALID: (
        "unusable image path",
        "fix the image paths of these records"),
    Cause.SEVERAL_IMAGES: (
        "record with several images",
        "split the record into one record per image, or audit with a tool for multi-image samples"),
    Cause.IMAGE_NOT_PATH: (
        "image embedded instead of a path",
        "save the images as files and reference them by relative path"),
    Cause.NO_IMAGE: (
        "record without an image",
        "these records cannot carry an image trigger; audit them with a text-only tool"),
    Cause.NO_CONVERSATION: (
        "record without an instruction",
        'give each record a user turn, e.g. {"id": "a1", "image": "a1.png", "conversations": [{"from": '
        '"human", "value": "<image> What is shown?"}, {"from": "gpt", "value": "a cat"}]} or '
        '{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What '
        'is shown?"}]}, {"role": "assistant", "content": "a cat"}], "images": ["a1.png"]}'),
    Cause.NOT_AN_OBJECT: (
        "record is not a JSON object",
        "each record must be a JSON object"),
    Cause.IMAGE_TOO_LARGE: (
        "image over the pixel limit",
        "raise --max-image-pixels if these images are expected"),
    Cause.PROMPT_TOO_LONG: (
        "instruction over the token limit",
        "raise --max-prompt-tokens if these instructions are expected"),
    Cause.PROMPT_UNTOKENISABLE: (
        "instruction the tokenizer cannot encode",
        "fix the text of these instructions"),
    Cause.IMAGE_UNDECODABLE: (
        "image cannot be decoded",
        "replace or remove the broken image files"),
    Cause.TOO_FEW_IMAGE_TOKENS: (
        "too few image tokens",
        "check the processor settings of the checkpoint"),
    Cause.FORWARD_FAILED: (
        "the model failed on the sample",
        "see the reason of each record in analysis.json"),
    Cause.BAD_FEATURES: (
        "unusable stage-1 values",
        "extract the features again with this version"),
    Cause.NOT_IN_DUMP: (
        "record not in the imported dump",
        "export the dump from a run over this very dataset, or pass the dataset it was made from"),
    Cause.OTHER: (
        "other reason",
        "see the reason of each record in analysis.json"),
}
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


def cause_of(code: str | None) -> tuple[Cause, str, str]:
    """(cause, title, fix) of a recorded cause code; none or unknown -> OTHER."""
    try:
        cause = Cause(code)
    except ValueError:
        cause = Cause.OTHER
    return (cause, *ABOUT[cause])


def group_reasons(items: Iterable[tuple[str, str | None, str]]) -> tuple[CauseGroup, ...]:
    """(id, cause code, reason) triples, input order -> groups, largest first (ties: first seen)."""
    counts: dict[Cause, int] = {}
    examples: dict[Cause, list[tuple[str, str]]] = {}
    for rid, code, reason in items:
        cause = cause_of(code)[0]
        if cause not in counts:
            counts[cause], examples[cause] = 0, []
        counts[cause] += 1
        if len(examples[cause]) < MAX_EXAMPLES:
            examples[cause].append((rid, reason))
    order = sorted(counts, key=lambda c: -counts[c])  # stable: ties keep first-seen order
    return tuple(CauseGroup(str(c), *ABOUT[c], counts[c], tuple(examples[c])) for c in order)
