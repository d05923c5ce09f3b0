"""Where a features table came from, as typed records: the model, adapter and
dataset (paths and digests), the runtime that computed the rows (device,
dtype, backend, library versions), or the dump it was imported from.

It is written into the features file's metadata (`to_dict`) and read back
(`from_dict`, which takes what an older file or an imported dump lacks as
None); the report, summary.json, the manifest and the resume fingerprint read
these records, not nested dictionaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any


def _record(cls: type, data: Any) -> Any:
    """`cls` from a mapping with every field present, else None (an older or foreign file)."""
    if not isinstance(data, Mapping):
        return None
    names = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    if any(n not in data for n in required):
        return None
    return cls(**{n: data[n] for n in names if n in data})


@dataclass(frozen=True)
class ModelRef:
    path: str
    model_type: str
    family: str
    sha256_tree: str  # SHA-256 over sorted "path digest" lines of every file (fileio.sha256_tree)
    n_layers: int


@dataclass(frozen=True)
class AdapterRef:
    path: str
    sha256_tree: str
    merged: bool = True  # applied and merged into the model before stage 1


@dataclass(frozen=True)
class BaseRef:
    """What the answers were also scored under (the base pass)."""

    how: str  # "adapter disabled" (the same weights) or "model" (--base)
    path: str
    sha256_tree: str


@dataclass(frozen=True)
class DatasetRef:
    path: str
    format: str
    sha256: str
    records: int


@dataclass(frozen=True)
class SourceRef:
    """An imported features dump (the reference code's bye-jsonl)."""

    format: str
    path: str
    sha256: str
    values: str  # what the values are, e.g. "entropy as given (nats)"


@dataclass(frozen=True)
class Runtime:
    device: str
    dtype: str
    backend: Mapping[str, Any]  # {"name": "torch"} or the ONNX graph, provider and versions
    attention: str
    torch: str
    transformers: str
    python: str
    libraries: Mapping[str, str | None]
    engine: Mapping[str, str] | None = None  # {"name": "ray", "address": ...} when stage 1 ran on Ray

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.engine is None:
            del out["engine"]
        return out


@dataclass(frozen=True)
class Provenance:
    n_layers: int | None
    tool: Mapping[str, str] | None = None
    model: ModelRef | None = None
    adapter: AdapterRef | None = None
    dataset: DatasetRef | None = None
    environment: Runtime | None = None
    source: SourceRef | None = None
    config: Mapping[str, Any] | None = None  # the audit's configuration (AuditConfig.to_dict)
    base: BaseRef | None = None  # the base pass's model, when the answers were scored under one

    @property
    def imported(self) -> bool:
        """From a dump in another tool's format, not from bye-audit's stage 1."""
        return self.source is not None

    def to_dict(self, schema_version: int) -> dict[str, Any]:
        """The features file's metadata. Stage 1's names every part (adapter None
        without one); an imported dump's names its source."""
        out: dict[str, Any] = {"schema_version": schema_version, "n_layers": self.n_layers}
        if self.source is not None:
            out["source"] = asdict(self.source)
        if self.model is not None:
            out.update({"tool": dict(self.tool or {}), "model": asdict(self.model),
                        "adapter": None if self.adapter is None else asdict(self.adapter),
                        "dataset": None if self.dataset is None else asdict(self.dataset),
                        "environment": None if self.environment is None else self.environment.to_dict(),
                        "config": dict(self.config or {}),
                        "base": None if self.base is None else asdict(self.base)})
        return out

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> Provenance:
        env = meta.get("environment")
        runtime = _record(Runtime, env)
        n = meta.get("n_layers")
        return cls(n_layers=int(n) if isinstance(n, int) else None,
                   tool=meta.get("tool") if isinstance(meta.get("tool"), Mapping) else None,
                   model=_record(ModelRef, meta.get("model")),
                   adapter=_record(AdapterRef, meta.get("adapter")),
                   dataset=_record(DatasetRef, meta.get("dataset")), environment=runtime,
                   source=_record(SourceRef, meta.get("source")),
                   config=meta.get("config") if isinstance(meta.get("config"), Mapping) else None,
                   base=_record(BaseRef, meta.get("base")))
