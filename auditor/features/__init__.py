"""Stage 1's output: the features table and its files (Parquet, and the
reference code's per-sample entropy dump)."""

from __future__ import annotations

from pathlib import Path

from ..errors import AuditInputError
from .bye_jsonl import read_bye_jsonl
from .table import (FEATURES_SCHEMA_VERSION, ROW_GROUP, SCHEMA, FeatureSet, SampleFeatures, Status, TableRows,
                    read_features_bytes, read_features_file, render_features)

__all__ = ["FEATURES_SCHEMA_VERSION", "ROW_GROUP", "SCHEMA", "FeatureSet", "SampleFeatures", "Status",
           "TableRows", "read_features", "read_features_bytes", "render_features"]


def read_features(path: Path) -> FeatureSet:
    """A features file of `extract`/`audit`, or (`.jsonl`) the reference code's
    per-sample entropy dump (bye_jsonl.py)."""
    path = Path(path)
    if not path.is_file():
        raise AuditInputError(f"{path}: features file not found; run `bye-audit extract` first")
    return read_bye_jsonl(path) if path.suffix.lower() == ".jsonl" else read_features_file(path)
