"""The stage-1 record and its file: one Parquet row per sample, errors as rows."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import AuditInputError
from .provenance import Provenance

Status = Literal["ok", "skipped", "error"]
# 2 added the attention masses and per-head entropies; 3 the answer's scores; 4 the later answer
# turns' scores and the truncation count; 5 the cause code of a skip or failure. 1 to 4 are still read.
FEATURES_SCHEMA_VERSION = 5
_META_KEY = b"bye_audit"
ROW_GROUP = 65_536

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
    ("answer_tokens", pa.int32()),
    ("answer_nll", pa.float64()),
    ("answer_first_nll", pa.float64()),
    ("base_answer_nll", pa.float64()),
    ("base_first_nll", pa.float64()),
    ("answer_missing", pa.string()),
    ("later_tokens", pa.list_(pa.int32())),
    ("later_nll", pa.list_(pa.float64())),
    ("base_later_nll", pa.list_(pa.float64())),
    ("later_missing", pa.string()),
    ("answers_truncated", pa.int32()),
    ("cause", pa.string()),
])
_V2_COLUMNS = ("mass_image", "mass_text", "mass_rest", "entropy_heads")
_OLD_FILE = "not scored: a features file of bye-audit before schema 3"
_V3_COLUMNS = ("answer_tokens", "answer_nll", "answer_first_nll", "base_answer_nll", "base_first_nll",
               "answer_missing")
_V4_COLUMNS = ("later_tokens", "later_nll", "base_later_nll", "later_missing", "answers_truncated")
_V5_COLUMNS = ("cause",)


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
    # The first answer turn, teacher forced after the prompt in the same pass:
    # its token count, mean token NLL and first-token NLL (nats) under the
    # submitted model, and the NLLs under the base (None without a base pass).
    # All None when it was not scored; `answer_missing` says why.
    answer_tokens: int | None = None
    answer_nll: float | None = None
    answer_first_nll: float | None = None
    base_answer_nll: float | None = None
    base_first_nll: float | None = None
    answer_missing: str | None = None
    # The later answer turns (turn 2 on), one entry per turn, None where not
    # scored: token count, mean token NLL under the submitted model and under
    # the base; why some were not scored; how many answer turns (the first
    # included) were cut to the token bound (--max-answer-tokens, the context).
    later_tokens: tuple[int | None, ...] = ()
    later_nll: tuple[float | None, ...] = ()
    base_later_nll: tuple[float | None, ...] = ()
    later_missing: str | None = None
    answers_truncated: int | None = None
    # The code of `reason` (auditor.causes.Cause) on skipped and failed rows,
    # given where the skip or failure happens; None on "ok" rows and in files
    # of schema < 5.
    cause: str | None = None

    @property
    def answer_gain(self) -> float | None:
        """How much more likely the fine-tune finds the answer than the base:
        base NLL - submitted NLL (nats per token)."""
        if self.answer_nll is None or self.base_answer_nll is None:
            return None
        return self.base_answer_nll - self.answer_nll


class TableRows(Sequence[SampleFeatures]):
    """The rows of a features file, built on access. A file of a million rows
    is read as columns (stages 2-3 use arrays); only the rows a caller touches
    become objects."""

    def __init__(self, table: pa.Table):
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, i: int) -> SampleFeatures: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[SampleFeatures, ...]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self[k] for k in range(*i.indices(len(self))))
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return _row(self.table.slice(i % len(self), 1).to_pylist()[0])

    def __iter__(self) -> Iterator[SampleFeatures]:
        for batch in self.table.to_batches(max_chunksize=4096):
            yield from (_row(d) for d in batch.to_pylist())


def _row(d: dict[str, Any]) -> SampleFeatures:
    return SampleFeatures(index=d["index"], id=d["id"], status=d["status"], reason=d["reason"],
                          n_image_tokens=d["n_image_tokens"], entropy=tuple(d["entropy"] or ()),
                          entropy_norm=tuple(d["entropy_norm"] or ()),
                          mass_image=tuple(d.get("mass_image") or ()),
                          mass_text=tuple(d.get("mass_text") or ()),
                          mass_rest=tuple(d.get("mass_rest") or ()),
                          entropy_heads=tuple(tuple(h) for h in d.get("entropy_heads") or ()),
                          **{k: d.get(k) for k in _V3_COLUMNS},
                          **{k: tuple(d.get(k) or ()) for k in _V4_COLUMNS[:3]},
                          **{k: d.get(k) for k in _V4_COLUMNS[3:]}, cause=d.get("cause"))


def rows_table(rows: Iterable[SampleFeatures]) -> pa.Table:
    """Stage-1 records as the features table (SCHEMA), input order."""
    rows = list(rows)
    cols: dict[str, list[Any]] = {name: [getattr(r, name) for r in rows] for name in SCHEMA.names}
    for name in ("entropy", "entropy_norm", "mass_image", "mass_text", "mass_rest", *_V4_COLUMNS[:3]):
        cols[name] = [list(v) for v in cols[name]]
    cols["entropy_heads"] = [[list(h) for h in v] for v in cols["entropy_heads"]]
    return pa.table(cols, schema=SCHEMA)


@dataclass(frozen=True)
class FeatureSet:
    """Stage 1's features as one columnar table (Arrow), whether they come from
    stage 1 or from a file: stages 2-3 read arrays, and only the rows a caller
    touches become `SampleFeatures` objects."""

    rows: Sequence[SampleFeatures]  # input order; records given here are put into a table (TableRows)
    meta: dict[str, Any]  # model, dataset, config, environment
    # Stage 1 of this run only (not in the file, whose rows are the same either
    # way): the shards reused from an interrupted run and those discarded (Journal).
    resume: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rows, TableRows):
            object.__setattr__(self, "rows", TableRows(rows_table(self.rows)))

    @cached_property
    def provenance(self) -> Provenance:
        """Where the rows came from, typed (model, adapter, dataset, runtime, or an imported dump)."""
        return Provenance.from_dict(self.meta)

    @property
    def table(self) -> pa.Table:
        """The features table, SCHEMA's columns, input order."""
        assert isinstance(self.rows, TableRows)
        return self.rows.table

    @property
    def n_ok(self) -> int:
        return self.column("status").count("ok")

    @property
    def ok_rows(self) -> tuple[SampleFeatures, ...]:
        return tuple(r for r in self.rows if r.status == "ok")

    @property
    def n_layers(self) -> int:
        """Layers per sample: the metadata's, else the longest row's."""
        if self.provenance.n_layers:
            return self.provenance.n_layers
        return int(self.layer_values()[1].max(initial=0))

    def column(self, name: Literal["index", "id", "status", "reason", "cause"]) -> list[Any]:
        """One scalar column, input order."""
        return self.table.column(name).to_pylist()

    def layer_values(self, name: str = "entropy_norm", n_layers: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """A per-layer column as (N, n_layers) float64 and each row's own length
        (N,) int; rows of another length are all NaN, so a caller can name them."""
        arr = self.table.column(name).combine_chunks()
        if isinstance(arr, pa.ChunkedArray):  # an empty table
            arr = pa.concat_arrays(arr.chunks) if arr.chunks else pa.array([], arr.type)
        lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        width = int(lengths.max(initial=0)) if n_layers is None else n_layers
        out = np.full((len(lengths), width), np.nan)
        whole = lengths == width
        if width and whole.any():
            # offsets index the list array's child values, slice offset included
            offsets = arr.offsets.to_numpy()[:-1][whole]
            values = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            n, start = len(offsets), int(offsets[0])
            if whole.all() and np.array_equal(offsets, start + width * np.arange(n)):
                # the usual file: no gather
                out = values[start:start + n * width].reshape(n, width).copy()
            else:
                out[whole] = values[offsets[:, None] + np.arange(width)]
        return out, lengths


def render_features(fs: FeatureSet) -> bytes:
    """The features file as Parquet bytes (schema above; metadata under key 'bye_audit')."""
    meta = {**fs.meta, "schema_version": FEATURES_SCHEMA_VERSION}
    table = fs.table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True)})
    buf = io.BytesIO()
    # 64k-row groups: a reader decodes one group at a time (a million rows in one
    # group cost a third more peak memory to read)
    pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP)
    return buf.getvalue()


def read_features_file(path: Path) -> FeatureSet:
    """A features file of `extract`/`audit` (Parquet; `read_features` checks that it exists)."""
    path = Path(path)
    return _from_table(_read_table(path, path), path)


def read_features_bytes(data: bytes, path: Path) -> FeatureSet:
    """A features file held in memory (e.g. a resumed shard whose digest was just
    checked); `path` names it in errors."""
    return _from_table(_read_table(pa.BufferReader(data), path), path)


def _read_table(source: Any, path: Path) -> pa.Table:
    try:
        return pq.read_table(source)
    except (pa.ArrowInvalid, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AuditInputError(f"{path}: not a readable Parquet file ({first})") from None


def _from_table(table: pa.Table, path: Path) -> FeatureSet:
    raw = (table.schema.metadata or {}).get(_META_KEY)
    version_1 = not (set(_V2_COLUMNS) & set(table.column_names))
    version_2 = not (set(_V3_COLUMNS) & set(table.column_names))
    version_3 = not (set(_V4_COLUMNS) & set(table.column_names))
    version_4 = not (set(_V5_COLUMNS) & set(table.column_names))
    missing = (set(SCHEMA.names) - set(table.column_names) - (set(_V2_COLUMNS) if version_1 else set())
               - (set(_V3_COLUMNS) if version_2 else set()) - (set(_V4_COLUMNS) if version_3 else set())
               - (set(_V5_COLUMNS) if version_4 else set()))
    if raw is None or missing:
        raise AuditInputError(f"{path}: not a bye-audit features file (missing "
                              f"{'metadata' if raw is None else ', '.join(sorted(missing))})")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise AuditInputError(f"{path}: its bye-audit metadata is not a JSON object; re-run `bye-audit "
                              "extract`")
    if meta.get("schema_version") not in (1, 2, 3, 4, FEATURES_SCHEMA_VERSION):
        raise AuditInputError(f"{path}: features schema version {meta.get('schema_version')!r}, this tool "
                              f"reads 1 to {FEATURES_SCHEMA_VERSION}; re-run `bye-audit extract`")
    if version_1:  # no masses or per-head entropies: empty lists, as stage 1 of v1 wrote them
        for name in _V2_COLUMNS:
            table = table.append_column(SCHEMA.field(name), pa.array([[]] * table.num_rows,
                                                                      SCHEMA.field(name).type))
    if version_2:  # answers not scored: nulls, and the reason on the analysed rows
        ok = [s == "ok" for s in table.column("status").to_pylist()]
        for name in _V3_COLUMNS:
            values = ([_OLD_FILE if k else None for k in ok] if name == "answer_missing"
                      else [None] * table.num_rows)
            table = table.append_column(SCHEMA.field(name), pa.array(values, SCHEMA.field(name).type))
    if version_3:  # one answer turn scored, none cut: no later turns, no count
        for name in _V4_COLUMNS:
            empty = [[]] * table.num_rows if name in _V4_COLUMNS[:3] else [None] * table.num_rows
            table = table.append_column(SCHEMA.field(name), pa.array(empty, SCHEMA.field(name).type))
    if version_4:  # no cause recorded: the report groups these reasons as "other"
        table = table.append_column(SCHEMA.field("cause"), pa.array([None] * table.num_rows, pa.string()))
    try:
        table = table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise AuditInputError(f"{path}: a column has the wrong type ({e}); "
                              "re-run `bye-audit extract`") from None
    return FeatureSet(rows=TableRows(table), meta=meta)
