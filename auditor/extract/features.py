"""The stage-1 record and its file: one Parquet row per sample, errors as rows."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AuditInputError

Status = Literal["ok", "skipped", "error"]
FEATURES_SCHEMA_VERSION = 1
_META_KEY = b"bye_audit"

SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("id", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("n_image_tokens", pa.int32()),
    ("entropy", pa.list_(pa.float64())),
    ("entropy_norm", pa.list_(pa.float64())),
])


@dataclass(frozen=True)
class SampleFeatures:
    """Stage-1 result for one sample: per-layer entropy (nats) and H / ln T.

    status "skipped": the record could not be read (reason says why);
    "error": reading worked but the forward pass or image decoding failed.
    """

    index: int
    id: str
    status: Status
    reason: str | None = None
    n_image_tokens: int = 0
    entropy: tuple[float, ...] = ()
    entropy_norm: tuple[float, ...] = ()


@dataclass(frozen=True)
class FeatureSet:
    rows: tuple[SampleFeatures, ...]  # input order
    meta: dict[str, Any]  # model, dataset, config, environment

    @property
    def ok_rows(self) -> tuple[SampleFeatures, ...]:
        return tuple(r for r in self.rows if r.status == "ok")


def render_features(fs: FeatureSet) -> bytes:
    """The features file as Parquet bytes (schema above; metadata under key 'bye_audit')."""
    cols = {name: [getattr(r, name) for r in fs.rows] for name in SCHEMA.names}
    cols["entropy"] = [list(v) for v in cols["entropy"]]
    cols["entropy_norm"] = [list(v) for v in cols["entropy_norm"]]
    meta = {**fs.meta, "schema_version": FEATURES_SCHEMA_VERSION}
    table = pa.table(cols, schema=SCHEMA.with_metadata({_META_KEY: json.dumps(meta, sort_keys=True)}))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_features(path: Path) -> FeatureSet:
    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"{path}: features file not found; run `bye-audit extract` first")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise AuditInputError(f"{path}: not a readable Parquet file ({e})") from None
    raw = (table.schema.metadata or {}).get(_META_KEY)
    missing = set(SCHEMA.names) - set(table.column_names)
    if raw is None or missing:
        raise AuditInputError(f"{path}: not a bye-audit features file (missing "
                              f"{'metadata' if raw is None else ', '.join(sorted(missing))})")
    meta = json.loads(raw)
    if meta.get("schema_version") != FEATURES_SCHEMA_VERSION:
        raise AuditInputError(f"{path}: features schema version {meta.get('schema_version')!r}, "
                              f"this tool reads {FEATURES_SCHEMA_VERSION}; re-run `bye-audit extract`")
    rows = tuple(
        SampleFeatures(index=d["index"], id=d["id"], status=d["status"], reason=d["reason"],
                       n_image_tokens=d["n_image_tokens"], entropy=tuple(d["entropy"]),
                       entropy_norm=tuple(d["entropy_norm"]))
        for d in table.select(SCHEMA.names).to_pylist())
    return FeatureSet(rows=rows, meta=meta)
