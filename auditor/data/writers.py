"""Filtered copies of a dataset, in its own format, records verbatim, input order."""

from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..fileio import utf8
from .records import Dataset, LineRecords


def cleaned_name(dataset: Dataset) -> str:
    return "cleaned" + dataset.path.suffix.lower()


def render_cleaned(dataset: Dataset, keep: Iterable[int]) -> bytes:
    """The records at indices `keep` (in input order) in the dataset's own format."""
    if dataset.format == "parquet":
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(dataset.table.take(sorted(keep)), buf, compression="zstd")
        return buf.getvalue()
    if isinstance(dataset.records, LineRecords):  # JSONL: the kept lines, byte for byte
        return "".join(dataset.records.lines[i] + "\n" for i in sorted(keep)).encode()
    kept = [dataset.records[i] for i in sorted(keep)]
    if dataset.format == "llava-json":
        return utf8(json.dumps(kept, indent=2, ensure_ascii=False) + "\n")
    return utf8("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))


def render_flagged(dataset: Dataset, flagged: Iterable[Mapping[str, Any]]) -> bytes:
    """JSON Lines of each row of `flagged` ({"index", "id", "score", ...}; the
    bundle's: by group, most suspicious first) with "record", the input record
    verbatim, in that order."""
    lines = []
    for f in flagged:
        row = {**f, "record": dataset.records[f["index"]]}
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True, default=_json_default) + "\n")
    return utf8("".join(lines))


def _json_default(value: Any) -> Any:
    """JSON for the values a Parquet record can hold beyond JSON's own (README,
    "Outputs"): bytes as {"$base64": ...} (embedded images); timestamps, dates
    and times as ISO 8601 strings (pandas' nanosecond Timestamp is a datetime);
    durations as {"$seconds": ...}; decimals as their exact decimal string."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return {"$seconds": value / datetime.timedelta(seconds=1)}
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} value to JSON")
