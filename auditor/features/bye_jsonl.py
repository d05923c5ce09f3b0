"""The reference code's per-sample entropy dump, both ways (interop with published runs).

One JSON object per line: {"question_id": ID, "entropy": {"0": H0, "1": H1, ...}},
the entropy of each decoder layer in nats. It carries no image-token count, so
an imported dump is analysed on the values as given: with a fixed count T
(LLaVA's 576) H / ln T is a constant rescaling, and every statistic of stages
2-3 (BSI, the mixtures, the robust standardisation) is unchanged by it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..causes import Cause
from ..errors import AuditInputError
from ..fileio import sha256_file
from .table import FEATURES_SCHEMA_VERSION, FeatureSet, SampleFeatures

FORMAT = "bye-jsonl"


def render_bye_jsonl(fs: FeatureSet) -> bytes:
    """The analysed (status ok) rows as reference-format lines, input order; raw entropy in nats."""
    lines = []
    for r in fs.rows:
        if r.status == "ok":
            entropy = {str(layer): v for layer, v in enumerate(r.entropy)}
            lines.append(json.dumps({"question_id": r.id, "entropy": entropy}, allow_nan=True) + "\n")
    return "".join(lines).encode()


def read_bye_jsonl(path: Path) -> FeatureSet:
    """A reference-format dump as a FeatureSet (every row "ok"; the layer count
    is the most common one, so a row with another count is left out by stage 2
    and named). Rows keep the file's order; `align` matches them to a dataset."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AuditInputError(f"{path}: not UTF-8 text (byte {e.start}); save the dump as UTF-8") from None
    rows, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditInputError(f"{path}:{lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        sid, values = _parse(path, lineno, obj)
        if sid in seen:
            raise AuditInputError(f"{path}:{lineno}: question_id {sid!r} repeats line {seen[sid]}; ids must "
                                  "be unique")
        seen[sid] = lineno
        rows.append(SampleFeatures(len(rows), sid, "ok", None, 0, values, values))
    if not rows:
        raise AuditInputError(f"{path}: no samples; expected one {{\"question_id\", \"entropy\"}} object per "
                              "line")
    n_layers = max(Counter(len(r.entropy) for r in rows).most_common(), key=lambda kv: (kv[1], kv[0]))[0]
    meta = {"schema_version": FEATURES_SCHEMA_VERSION, "n_layers": n_layers,
            "source": {"format": FORMAT, "path": str(path), "sha256": sha256_file(path),
                       "values": "entropy as given (the reference code's: nats, not normalised)"}}
    return FeatureSet(rows=tuple(rows), meta=meta)


def _parse(path: Path, lineno: int, obj: Any) -> tuple[str, tuple[float, ...]]:
    where = f"{path}:{lineno}"
    if not isinstance(obj, dict) or "question_id" not in obj or not isinstance(obj.get("entropy"), dict):
        raise AuditInputError(f"{where}: expected {{\"question_id\": ..., \"entropy\": {{\"0\": ..., ...}}}}")
    try:
        by_layer = {int(k): v for k, v in obj["entropy"].items()}
    except ValueError:
        raise AuditInputError(f"{where}: entropy keys must be layer numbers, "
                              f"got {sorted(obj['entropy'])[:3]}") from None
    layers = sorted(by_layer)
    if layers != list(range(len(layers))):
        raise AuditInputError(f"{where}: entropy layers must be 0..{len(layers) - 1} with none missing, got "
                              f"{layers[:8]}{'...' if len(layers) > 8 else ''}")
    values = []
    for k in layers:
        v = by_layer[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise AuditInputError(f"{where}: entropy of layer {k} is {v!r}, not a number")
        values.append(float(v))  # NaN/inf pass: stage 2 leaves such a sample out and counts it
    return str(obj["question_id"]), tuple(values)


def align(fs: FeatureSet, ids: list[str], path: Path) -> FeatureSet:
    """The dump's rows in the dataset's order (`ids`); a record the dump lacks
    becomes a skipped row (counted and reported), an id the dataset lacks is an error."""
    by_id = {r.id: r for r in fs.rows}
    unknown = by_id.keys() - set(ids)
    if unknown:
        raise AuditInputError(f"{path}: {len(unknown)} question_id(s) are not in the dataset, e.g. "
                              f"{sorted(unknown)[0]!r}; pass the dataset the dump was made from")
    rows = []
    for index, sid in enumerate(ids):
        r = by_id.get(sid)
        rows.append(SampleFeatures(index, sid, "skipped", f"not in {path.name}", cause=Cause.NOT_IN_DUMP)
                    if r is None else
                    SampleFeatures(index, sid, "ok", None, 0, r.entropy, r.entropy_norm))
    return FeatureSet(rows=tuple(rows), meta=fs.meta)

