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
FEATURES_SCHEMA_VERSION = 2  # 2 added the attention masses and per-head entropies; 1 is still read
_META_KEY = b"bye_audit"

SCHEMA = pa.schema([
    ("index", pa.int64()),
    ("id", pa.string()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("n_image_tokens", pa.int32()),
    ("entropy", pa.list_(pa.float64())),
    ("entropy_norm", pa.list_(pa.float64())),
    ("mass_image", pa.list_(pa.float64())),
    ("mass_text", pa.list_(pa.float64())),
    ("mass_rest", pa.list_(pa.float64())),
    ("entropy_heads", pa.list_(pa.list_(pa.float64()))),
])
_V2_COLUMNS = ("mass_image", "mass_text", "mass_rest", "entropy_heads")


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
    # Per layer, where the head-averaged query row put its mass before
    # renormalisation: image tokens, the instruction text, the rest (template,
    # system, BOS). mass_text/rest are NaN when the prompt was not found.
    mass_image: tuple[float, ...] = ()
    mass_text: tuple[float, ...] = ()
    mass_rest: tuple[float, ...] = ()
    entropy_heads: tuple[tuple[float, ...], ...] = ()  # (L, H) with --per-head, else empty


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
    for name in ("entropy_norm", "mass_image", "mass_text", "mass_rest"):
        cols[name] = [list(v) for v in cols[name]]
    cols["entropy_heads"] = [[list(h) for h in v] for v in cols["entropy_heads"]]
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
    version_1 = not (set(_V2_COLUMNS) & set(table.column_names))
    missing = set(SCHEMA.names) - set(table.column_names) - (set(_V2_COLUMNS) if version_1 else set())
    if raw is None or missing:
        raise AuditInputError(f"{path}: not a bye-audit features file (missing "
                              f"{'metadata' if raw is None else ', '.join(sorted(missing))})")
    meta = json.loads(raw)
    if meta.get("schema_version") not in (1, FEATURES_SCHEMA_VERSION):
        raise AuditInputError(f"{path}: features schema version {meta.get('schema_version')!r}, "
                              f"this tool reads 1 to {FEATURES_SCHEMA_VERSION}; re-run `bye-audit extract`")
    names = [n for n in SCHEMA.names if n in table.column_names]
    rows = tuple(
        SampleFeatures(index=d["index"], id=d["id"], status=d["status"], reason=d["reason"],
                       n_image_tokens=d["n_image_tokens"], entropy=tuple(d["entropy"]),
                       entropy_norm=tuple(d["entropy_norm"]),
                       mass_image=tuple(d.get("mass_image") or ()), mass_text=tuple(d.get("mass_text") or ()),
                       mass_rest=tuple(d.get("mass_rest") or ()),
                       entropy_heads=tuple(tuple(h) for h in d.get("entropy_heads") or ()))
        for d in table.select(names).to_pylist())
    return FeatureSet(rows=rows, meta=meta)
