"""The audit bundle: every output file, the renderer that makes it, and the
order they are made in, declared once (OUTPUTS).

A renderer takes the audit (`Audit`) and the outputs made before it (`Made`),
and returns the file's bytes, a JSON object, a `Path` to copy as it is
(features that already exist as a file), or None (not part of this bundle:
the attestation of an unsigned audit). The digests of earlier outputs go into summary.json,
the manifest and the attestation, so the order matters; nothing is written
until every output is rendered (`write`: all or nothing). `verify` reads the
names from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import Dataset, cleaned_name, render_cleaned, render_flagged
from .evidence.attestation import sign, statement
from .evidence.manifest import manifest_dict
from .features import FeatureSet, render_features
from .fileio import json_bytes, sha256_bytes, sha256_file, write_files_atomic
from .gate import Gate
from .report.html import render_html
from .report.pdf import render_pdf
from .report.sarif import render_sarif
from .report.summary import summary_dict
from .verdict import Analysis

if TYPE_CHECKING:
    from securesystemslib.signer import Signer

FEATURES = "features.parquet"
ANALYSIS = "analysis.json"
FLAGGED = "flagged.jsonl"
UNANALYSED = "unanalysed.jsonl"  # records that could not be analysed, with their cause: never in cleaned.*
CLEANED = "cleaned.*"  # cleaned.json, .jsonl or .parquet: the dataset's own format (cleaned_name)
REPORT = "report.html"
REPORT_PDF = "report.pdf"
SARIF = "findings.sarif"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
ATTESTATION = "attestation.dsse.json"


@dataclass(frozen=True)
class Audit:
    """Everything the renderers read."""

    analysis: Analysis
    dataset: Dataset
    features: FeatureSet
    gate: Gate
    report_id: str
    audited_at: str
    input_digests: Mapping[str, str]  # subject name -> SHA-256 (evidence.manifest.input_files)
    digests_by_path: Mapping[Path, str]  # the same, by resolved path (SARIF's artifacts)
    roots: Mapping[str, str | None]  # where each input root was (the manifest's)
    signer: Signer | None = None
    signer_name: str | None = None  # who holds the key (keygen --signer), when stored beside it
    heatmaps: Mapping[int, tuple[bytes, bytes]] | None = None
    sarif_root: Path | None = None
    features_file: Path | None = None  # the features already exist as this file: copied as it is
    with_features: bool = True  # False: `analyze` reading the features where they will stay
    features_in_place: Path | None = None  # ... and their file there (its digest is recorded)

    @property
    def resume(self) -> dict[str, Any]:
        return {} if self.features.resume is None else {"resume": self.features.resume}


class Made:
    """The outputs made so far, by file name: their bytes (or the file to copy),
    each one's SHA-256 computed once, and the JSON ones also as objects (the
    manifest and the attestation read summary.json's and the manifest's
    fields without parsing them back)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.sha256: dict[str, str] = {}
        self.objects: dict[str, dict[str, Any]] = {}

    def add(self, name: str, out: bytes | Path | dict[str, Any]) -> None:
        if isinstance(out, dict):
            self.objects[name], out = out, json_bytes(out)
        self.files[name] = out
        self.sha256[name] = sha256_bytes(out) if isinstance(out, bytes) else sha256_file(out)


# A renderer's output: bytes, a file to copy as it is, a JSON object, or None (not in this bundle).
Rendered = bytes | Path | dict[str, Any] | None
Renderer = Callable[[Audit, Made], Rendered]


def _features(a: Audit, made: Made) -> Rendered:
    if not a.with_features:
        return None
    return a.features_file if a.features_file is not None else render_features(a.features)


def _analysis(a: Audit, made: Made) -> Rendered:
    return {**a.analysis.to_dict(), "inputs": a.features.meta, **a.resume}


def _flagged(a: Audit, made: Made) -> Rendered:
    return render_flagged(a.dataset, a.analysis.flag_rows())


def _unanalysed(a: Audit, made: Made) -> Rendered:
    rows = [{"index": u.index, "id": u.id, "reason": u.reason, "cause": u.cause}
            for u in a.analysis.unanalysed]
    return render_flagged(a.dataset, rows)


def _cleaned(a: Audit, made: Made) -> Rendered:
    if a.analysis.verdict == "inconclusive":
        return None  # nothing was decided: a "cleaned" copy of the whole input would invite training on it
    # Neither the flagged records nor those nobody looked at (unanalysed.jsonl) are vouched for.
    left_out = {f.index for f in a.analysis.flagged} | {u.index for u in a.analysis.unanalysed}
    return render_cleaned(a.dataset, set(range(len(a.dataset.records))) - left_out)


def _report(a: Audit, made: Made) -> Rendered:
    signing = None if a.signer is None else {"keyid": a.signer.public_key.keyid, "name": a.signer_name}
    return render_html(a.analysis, a.features.provenance, a.dataset, dict(a.heatmaps or {}), gate=a.gate,
                       signing=signing, features=a.features,
                       about={"report_id": a.report_id, "audited_at": a.audited_at})


def _pdf(a: Audit, made: Made) -> Rendered:
    html = made.files[REPORT]
    assert isinstance(html, bytes)
    return render_pdf(html)


def _sarif(a: Audit, made: Made) -> Rendered:
    return render_sarif(a.analysis, a.dataset, int(a.gate.exit_code), dict(a.digests_by_path), a.sarif_root,
                        a.report_id)


def _digests(a: Audit, made: Made) -> dict[str, str]:
    """The outputs' digests so far, and the features' where `analyze` leaves them in place."""
    out = dict(made.sha256)
    if not a.with_features and a.features_in_place is not None:
        out[FEATURES] = sha256_file(a.features_in_place)
    return out


def _summary(a: Audit, made: Made) -> Rendered:
    return summary_dict(a.analysis, a.features.provenance, _digests(a, made), a.gate, a.report_id,
                        a.audited_at)


def _manifest(a: Audit, made: Made) -> Rendered:
    return manifest_dict(dict(a.input_digests), _digests(a, made), dict(a.roots), a.features.provenance,
                         made.objects[SUMMARY]) | a.resume


def _attestation(a: Audit, made: Made) -> Rendered:
    if a.signer is None:
        return None
    manifest, summary = made.objects[MANIFEST], made.objects[SUMMARY]
    subjects = {**manifest["files"], f"outputs/{MANIFEST}": made.sha256[MANIFEST]}
    predicate = {"report_id": a.report_id, "audited_at": a.audited_at, "verdict": a.analysis.verdict,
                 "exit_code": int(a.gate.exit_code), "reasons": a.analysis.reason_dicts(),
                 "counts": summary["counts"], "config": a.analysis.config.to_dict(), "tool": manifest["tool"],
                 "environment": manifest["environment"],
                 **({"signer": {"name": a.signer_name, "keyid": a.signer.public_key.keyid}}
                    if a.signer_name else {})}
    return sign(statement(subjects, predicate), a.signer)


# The bundle, in the order it is made.
OUTPUTS: tuple[tuple[str, Renderer], ...] = (
    (FEATURES, _features),
    (ANALYSIS, _analysis),
    (FLAGGED, _flagged),
    (UNANALYSED, _unanalysed),
    (CLEANED, _cleaned),
    (REPORT, _report),
    (REPORT_PDF, _pdf),
    (SARIF, _sarif),
    (SUMMARY, _summary),
    (MANIFEST, _manifest),
    (ATTESTATION, _attestation),
)
OUTPUT_NAMES = tuple(name for name, _ in OUTPUTS)  # CLEANED is a glob pattern


def file_name(name: str, dataset: Dataset) -> str:
    """An output's file name in this bundle (CLEANED takes the dataset's format)."""
    return cleaned_name(dataset) if name == CLEANED else name


def output_names(dataset: Dataset, with_features: bool = True) -> list[str]:
    """Every file a bundle of `dataset` may hold, in the order they are made."""
    return [file_name(n, dataset) for n, _ in OUTPUTS if with_features or n != FEATURES]


def render(audit: Audit) -> dict[str, bytes | Path]:
    """Every output of the bundle, by file name, in OUTPUTS' order."""
    made = Made()
    for name, renderer in OUTPUTS:
        out = renderer(audit, made)
        if out is not None:
            made.add(file_name(name, audit.dataset), out)
    return made.files


def write(out: Path, audit: Audit) -> list[Path]:
    """Render, then write every file atomically (all or nothing: a full disk
    leaves the folder as it was); an unsigned bundle removes a previous
    attestation, which no longer covers these files."""
    paths = write_files_atomic(Path(out), render(audit))
    if audit.signer is None:
        (Path(out) / ATTESTATION).unlink(missing_ok=True)
    return paths
