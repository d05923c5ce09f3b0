"""Readers for LLaVA-style datasets: a JSON array (`.json`), one record per line
(`.jsonl`), or a Parquet table (`.parquet`) with the same fields as columns.

A record, in any of the shapes instruction sets come in:

- LLaVA / ShareGPT: {"id", "image", "conversations": [{"from": "human", "value":
  "<image>\\n..."}, {"from": "gpt", "value": "..."}]} ("user" / "assistant"
  and "role" / "content" keys are read too);
- OpenAI / Hugging Face chat: {"id", "messages": [{"role": "user", "content":
  [{"type": "image"}, {"type": "text", "text": "..."}]}, {"role": "assistant",
  "content": "..."}], "images": ["path"]} (content a string or a list of parts).

The image is "image" (a path) or "images" (a list holding one path). Problems
with one record make it a skipped sample with a reason; problems with the
whole file raise AuditInputError.
"""

from __future__ import annotations

import gc
import json
import os
import re
from pathlib import Path
from typing import Any

import orjson

from ..causes import Cause
from ..errors import AuditInputError
from ..fileio import real_path, resolve_file
from .records import Dataset, LineRecords, Sample

IMAGE_PLACEHOLDER = "<image>"
SUPPORTED_SUFFIXES = {".json": "llava-json", ".jsonl": "jsonl", ".parquet": "parquet"}


def dataset_format(path: Path) -> str:
    """The format its suffix names, or an input error naming the supported ones
    (checked before any model is loaded)."""
    fmt = SUPPORTED_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise AuditInputError(
            f"{path}: unsupported dataset format {Path(path).suffix!r}; supported: "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}")
    return fmt


def read_dataset(path: Path, image_root: Path | None = None, absolute_images: bool = False) -> Dataset:
    """Parse `path`; image paths resolve against `image_root` (default: the
    file's folder); `absolute_images`: an absolute path is taken as it is
    (else such a record is skipped with its reason)."""
    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"{path}: dataset file not found; pass an existing "
                              f"{', '.join(sorted(SUPPORTED_SUFFIXES))} file")
    fmt = dataset_format(path)
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise AuditInputError(f"{root}: image root is not a folder; pass --image-root DIR")
    table, lines = None, None
    if fmt == "parquet":
        table = _read_parquet(path)
        records: Any = table.to_pylist()
    elif fmt == "llava-json":
        records = _parse_json_array(path, _read_text(path))
    else:  # parsed one at a time and not kept: the lines are (LineRecords)
        numbered = _jsonl_lines(_read_text(path))
        lines = tuple(line for _, line in numbered)
        records = (_parse_line(path, lineno, line) for lineno, line in numbered)
    samples = []
    seen: dict[str, int] = {}
    real_root = str(real_path(root)).rstrip("/")  # "" for "/": every path starts with root + "/"
    collecting = gc.isenabled()
    # a million new records would make the cycle collector rescan all of them, often; none form cycles
    gc.disable()
    try:
        for i, rec in enumerate(records):
            sample = _to_sample(i, rec, real_root, absolute_images)
            if not (sample.id.isascii()
                    or _is_unicode(sample.id)):  # a lone surrogate: no output could name it
                raise AuditInputError(
                    f"{path}: record {i}: id {sample.id!r} is not valid Unicode (a lone surrogate escape); "
                    "ids name findings in every output: fix the id")
            texts = [("instruction", sample.prompt), ("answer", sample.answer)]
            for turn, (user, reply) in enumerate(sample.later, start=2):
                texts += [(f"turn {turn}'s instruction", user), (f"turn {turn}'s answer", reply)]
            for part, text in texts:
                # a text no tokenizer can encode is the record's fault, not the model's: named here
                if text and not (text.isascii() or _is_unicode(text)):
                    raise AuditInputError(
                        f"{path}: record {i} (id {sample.id!r}): its {part} is not valid Unicode (a lone "
                        "surrogate escape such as \\ud800, which no tokenizer can encode); fix the text")
            if sample.id in seen:
                raise AuditInputError(
                    f"{path}: record {i}: id {sample.id!r} repeats record {seen[sample.id]}; ids must be "
                    "unique so findings can name their record")
            seen[sample.id] = i
            samples.append(sample)
    finally:
        if collecting:
            gc.enable()
    return Dataset(path=path, format=fmt, image_root=root,
                   records=tuple(records) if lines is None else LineRecords(lines),
                   samples=tuple(samples), table=table)


def _read_parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AuditInputError(f"{path}: not a readable Parquet file ({first})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")  # no newline translation: "\r\n" stays as written
    except UnicodeDecodeError as e:
        raise AuditInputError(f"{path}: not UTF-8 text (byte {e.start}); save the dataset as UTF-8") from None


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (JSON's "\\ud800"), which UTF-8 cannot encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_TOO_DEEP = "JSON nested too deeply for its parser (over about 1,000 levels); no dataset record needs that"


def _parse_json_array(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AuditInputError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise AuditInputError(f"{path}: {_TOO_DEEP}; fix or remove the record") from None
    if not isinstance(data, list):
        raise AuditInputError(
            f"{path}: expected a JSON array of records (LLaVA format), got a JSON {type(data).__name__}")
    return data


def _jsonl_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the non-blank lines. Lines end at "\\n" only: JSON
    strings may hold U+2028 or U+0085 raw, which str.splitlines would split on,
    and a CRLF file's "\\r" stays in its line, so kept lines are copied byte for byte."""
    return [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _parse_line(path: Path, lineno: int, line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        pass  # orjson is stricter (NaN, integers past 64 bits, lone surrogates): the json module decides
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise AuditInputError(f"{path}:{lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise AuditInputError(f"{path}:{lineno}: {_TOO_DEEP}; fix or remove the line") from None


def _to_sample(index: int, rec: Any, root: str, absolute_images: bool = False) -> Sample:
    """`root`: the image root, resolved. Paths are handled as strings: this
    runs once per record, and a dataset can hold millions."""
    if not isinstance(rec, dict):
        return Sample(index, f"#{index}", None, "", "", "record is not a JSON object",
                      skip_cause=Cause.NOT_AN_OBJECT)
    turns = rec.get("conversations") if "conversations" in rec else rec.get("messages")
    prompt, answer, later, problem = _conversation(turns)
    sample = _with_image(index, rec, root, absolute_images, prompt, answer, problem)
    return sample._replace(later=later) if later else sample


def _with_image(index: int, rec: dict[str, Any], root: str, absolute_images: bool, prompt: str, answer: str,
                problem: str | None) -> Sample:
    rid = rec.get("id")
    sid = f"#{index}" if rid is None else str(rid)
    if problem:
        return Sample(index, sid, None, prompt, answer, problem, skip_cause=Cause.NO_CONVERSATION)
    image = rec.get("image")
    if image is None and isinstance(rec.get("images"), list):
        images = rec["images"]
        if len(images) > 1:
            return Sample(index, sid, None, prompt, answer,
                          f"record has {len(images)} images; one image per record is supported",
                          skip_cause=Cause.SEVERAL_IMAGES)
        image = images[0] if images else None
    if image is not None and not isinstance(image, str):
        return Sample(index, sid, None, prompt, answer,
                      f"image is a {type(image).__name__}, not a path; embedded images are not supported",
                      skip_cause=Cause.IMAGE_NOT_PATH)
    if not image:
        return Sample(index, sid, None, prompt, answer, "record has no image", skip_cause=Cause.NO_IMAGE)
    if "\x00" in image:  # the OS refuses such a path; say so instead of failing on it
        return Sample(index, sid, None, prompt, answer, f"image path {image!r} contains a NUL byte",
                      skip_cause=Cause.IMAGE_PATH_INVALID)
    if not (image.isascii() or _is_unicode(image)):
        return Sample(index, sid, None, prompt, answer, f"image path {image!r} is not valid Unicode",
                      skip_cause=Cause.IMAGE_PATH_INVALID)
    if os.path.isabs(image):
        if not absolute_images:
            return Sample(index, sid, None, prompt, answer,
                          f"image path {image!r} is absolute; paths must be relative to the dataset root",
                          skip_cause=Cause.IMAGE_ABSOLUTE)
        full, is_file = resolve_file(image)
        if not is_file:
            return Sample(index, sid, None, prompt, answer, f"image file not found: {image}",
                          skip_cause=Cause.IMAGE_MISSING)
        return Sample(index, sid, full, prompt, answer)
    full, is_file = resolve_file(f"{root}/{image}")
    if full != root and not full.startswith(root + "/"):
        return Sample(index, sid, None, prompt, answer,
                      f"image path {image!r} escapes the dataset root", skip_cause=Cause.IMAGE_ESCAPES_ROOT)
    if not is_file:
        return Sample(index, sid, None, prompt, answer, f"image file not found: {image}",
                      skip_cause=Cause.IMAGE_MISSING)
    return Sample(index, sid, full, prompt, answer)


_USER, _ASSISTANT = frozenset({"human", "user"}), frozenset({"gpt", "assistant"})


def _text(content: Any) -> str | None:
    """A turn's text: a string, or the text parts of a list of content parts
    ({"type": "text", "text": ...}; image parts hold no text); None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(t, str) for t in parts):
            return "\n".join(parts)
    return None


def _conversation(conv: Any) -> tuple[str, str, tuple[tuple[str, str], ...], str | None]:
    """(prompt without the image placeholder, first answer, later turns,
    problem or None), from a list of turns: {"from", "value"} (LLaVA,
    ShareGPT) or {"role", "content"} (OpenAI / Hugging Face chat). The later
    turns are (user text, answer) pairs after the first answer, in order: each
    answer with the user text before it ("" when two answers follow each
    other); a trailing user turn with no answer has nothing to score. Other
    roles (system) are not read."""
    if not isinstance(conv, list) or not conv:
        return "", "", (), "record has no conversations"
    human = gpt = None
    later: list[tuple[str, str]] = []
    pending = ""
    for turn in conv:
        if not isinstance(turn, dict):
            continue
        role = turn.get("from", turn.get("role"))
        if not isinstance(role, str):  # e.g. a list: no role at all (and not hashable)
            continue
        text = _text(turn.get("value", turn.get("content")))
        if role in _USER:
            if human is None:
                human = text
            elif gpt is not None:
                pending = (text or "").replace(IMAGE_PLACEHOLDER, "").strip()
        elif role in _ASSISTANT:
            if gpt is None:
                gpt = text
            elif human is not None:
                later.append((pending, text or ""))
                pending = ""
    if human is None:
        return "", "", (), "record has no human turn"
    return human.replace(IMAGE_PLACEHOLDER, "").strip(), gpt or "", tuple(later), None


def record_lines(path: Path, fmt: str) -> list[int]:
    """The 1-based line on which each record of the dataset file starts, input
    order (findings point at it). JSONL: the record's line; a JSON array: the
    line of the element's first character; Parquet has no lines: row i is
    "line" i + 1, by convention (docs/cli.md)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(range(1, pq.ParquetFile(path).metadata.num_rows + 1))
    text = _read_text(Path(path))
    if fmt != "llava-json":
        return [n for n, _ in _jsonl_lines(text)]
    decoder, ws = json.JSONDecoder(), re.compile(r"[ \t\n\r]*")
    starts, pos = [], ws.match(text, 0).end() + 1  # past "["
    while True:
        pos = ws.match(text, pos).end()
        if pos >= len(text) or text[pos] == "]":
            break
        starts.append(pos)
        _, pos = decoder.raw_decode(text, pos)  # the C scanner: no Python loop over characters
        pos = ws.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
    lines, line, last = [], 1, 0
    for s in starts:
        line += text.count("\n", last, s)
        lines.append(line)
        last = s
    return lines
