"""findings.sarif: SARIF 2.1.0, one result per flagged group (code scanning
makes every result an alert: a hundred poisoned samples are one finding),
ready for GitHub code scanning and other SARIF consumers.

A result points at the line where its group's most suspicious record starts
in the dataset file (JSON array, JSONL; Parquet row i is line i + 1), and
lists every sample of the group as a related location (up to
MAX_RELATED; flagged.jsonl and summary.json have them all). URIs are relative
to the dataset's folder (base DATASET_ROOT, with no absolute path in the
file), so it stays valid when the bundle moves; with `sarif_root`
(`--sarif-root`, a repository's root) they are relative to that root instead
(base %SRCROOT%), as code scanning wants. A run that could not decide
(inconclusive) says so in a notification and in `executionSuccessful`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__
from ..data import Dataset, record_lines
from ..detectors import DETECTORS
from ..errors import AuditInputError
from ..fileio import json_compact_bytes, real_path, sha256_file
from ..verdict import Analysis

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
MAX_RESULTS = 25_000  # GitHub code scanning keeps at most this many results per run
MAX_RELATED = 1_000  # and at most this many related locations per result
SECURITY_SEVERITY = "8.0"  # "high": a planted backdoor in training data


def rule(method: str) -> dict[str, Any]:
    """The SARIF reportingDescriptor of a method: its detector's words, with
    the severity every bye-audit rule carries."""
    return {**DETECTORS[method].info.sarif_rule, "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "backdoor", "data-poisoning", "machine-learning"],
                           "security-severity": SECURITY_SEVERITY, "precision": "medium",
                           "problem.severity": "error"}}


def _uri(path: Path, root: Path) -> str:
    return real_path(path).relative_to(real_path(root)).as_posix()


def sarif_dict(analysis: Analysis, dataset: Dataset, exit_code: int,
               digests: dict[Path, str] | None = None, sarif_root: Path | None = None,
               report_id: str | None = None) -> dict[str, Any]:
    """`digests`: SHA-256 by resolved path, for files already hashed (the manifest's)."""
    digests = digests or {}

    def sha(path: Path) -> str:
        return digests.get(real_path(path)) or sha256_file(path)

    base_id, root = "DATASET_ROOT", dataset.path.resolve().parent
    if sarif_root is not None:
        base_id, root = "%SRCROOT%", real_path(Path(sarif_root))
        if not real_path(dataset.path).is_relative_to(root):
            raise AuditInputError(f"--sarif-root {sarif_root}: the dataset {dataset.path} is not under it; "
                                  "pass the repository folder that holds the dataset")
    data_uri = _uri(dataset.path, root)
    descriptor = rule(analysis.method)
    lines = record_lines(dataset.path, dataset.format) if analysis.flagged else []
    artifacts = [{"location": {"uri": data_uri, "uriBaseId": base_id},
                  "hashes": {"sha-256": sha(dataset.path)}, "roles": ["analysisTarget"],
                  "mimeType": "application/json"
                  if dataset.format != "parquet" else "application/octet-stream"}]
    image_index: dict[str, int] = {}
    uris: dict[str, str | None] = {}  # by image: its URI under the root, None when it has none

    def image_location(sample, k: int) -> dict[str, Any] | None:
        if sample.image is not None and sample.image not in uris:  # a Path per flagged record is slow
            image = Path(sample.image)
            uris[sample.image] = (_uri(image, root) if image.is_file()
                                  and real_path(image).is_relative_to(root) else None)
        uri = None if sample.image is None else uris[sample.image]
        if uri is None:
            return None
        if uri not in image_index:
            image_index[uri] = len(artifacts)
            artifacts.append({"location": {"uri": uri, "uriBaseId": base_id},
                              "hashes": {"sha-256": sha(Path(sample.image))}})
        return {"id": k, "physicalLocation": {"artifactLocation": {
            "uri": uri, "uriBaseId": base_id, "index": image_index[uri]}},
            "message": {"text": f"the image of record {sample.id!r}"}}

    def record_location(index: int) -> dict[str, Any]:
        return {"physicalLocation": {"artifactLocation": {"uri": data_uri, "uriBaseId": base_id, "index": 0},
                                     "region": {"startLine": lines[index]}},
                "logicalLocations": [{"name": dataset.samples[index].id,
                                      "fullyQualifiedName": f"records[{index}]", "kind": "element"}]}

    results = []
    evidence = analysis.evidence_text
    for label, flags in analysis.flag_groups()[:MAX_RESULTS]:
        first, listed = flags[0], 0
        sample = dataset.samples[first.index]
        related: list[dict[str, Any]] = []
        for f in flags:
            if len(related) + 2 > MAX_RELATED:  # a record line and its image each count
                break
            related.append({"id": len(related), **record_location(f.index),
                            "message": {"text": f"record {dataset.samples[f.index].id!r} (record {f.index}, "
                                                f"line {lines[f.index]}; score {f.score:.4f})"}})
            pic = image_location(dataset.samples[f.index], len(related))
            if pic is not None:
                related.append(pic)
            listed += 1
        who = ("the " + label + (" channels" if " and " in label else " channel")
               if label in ("attention", "answers", "attention and answers") else f"method {label}")
        more = f"; the first {listed} are related locations" if len(flags) > listed else ""
        result: dict[str, Any] = {
            "ruleId": descriptor["id"], "ruleIndex": 0, "level": "error", "kind": "fail",
            "message": {"text": f"{len(flags)} record(s) flagged as suspected backdoor samples by {who}, the "
                        f"most suspicious {sample.id!r} (record {first.index}, line {lines[first.index]}): "
                        f"{evidence} (scores {first.score:.4f} to {flags[-1].score:.4f}; lower is more "
                        f"suspicious{more})."},
            "locations": [record_location(first.index)],
            "relatedLocations": related,
            "partialFingerprints": {"recordGroup/v1": f"{label}:{first.id}"},
            "properties": {"group": label, "records": len(flags), "index": first.index,
                           "score": first.score, "ids": [f.id for f in flags]},
        }
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "bye-audit", "version": __version__, "semanticVersion": __version__,
                                "rules": [descriptor]}},
            "automationDetails": {"id": f"bye-audit/{dataset.path.name}/{report_id or ''}"},
            "invocations": [{
                # An inconclusive audit did not do its job: say so, rather than look like a clean scan.
                "executionSuccessful": analysis.verdict != "inconclusive", "exitCode": exit_code,
                "exitCodeDescription": analysis.verdict,
                "toolExecutionNotifications": _notifications(analysis, len(results))}],
            # only a repository's root is named, never this machine's dataset folder
            **({"originalUriBaseIds": {base_id: {"uri": root.as_uri() + "/"}}} if sarif_root is not None
               else {}),
            "artifacts": artifacts,
            "results": results,
            "properties": {"verdict": analysis.verdict, "reasons": analysis.reason_dicts(),
                           "method": analysis.method, "evidenceLayers": list(analysis.evidence_layers),
                           "analysed": analysis.n_analysed, "records": analysis.n_records,
                           "flagged": len(analysis.flagged), "reportId": report_id},
        }],
    }


def _notifications(analysis: Analysis, n_results: int) -> list[dict[str, Any]]:
    out = []
    if analysis.verdict == "inconclusive":
        out.append({"level": "error", "descriptor": {"id": "BYE-INCONCLUSIVE"},
                    "message": {"text": "The audit is inconclusive, not a pass: "
                                        + "; ".join(r.text for r in analysis.reasons)}})
    for g in analysis.causes:
        out.append({"level": "warning", "descriptor": {"id": f"BYE-SKIPPED-{g.code}"},
                    "message": {"text": f"{g.count} record(s) not analysed: {g.title}; {g.fix}"}})
    groups = analysis.flag_groups()
    if n_results < len(groups):
        out.append({"level": "warning", "descriptor": {"id": "BYE-TRUNCATED"},
                    "message": {"text": f"{len(groups)} groups flagged; the {n_results} most suspicious are "
                                "listed (code scanning's limit per run); flagged.jsonl lists all"}})
    return out


def render_sarif(analysis: Analysis, dataset: Dataset, exit_code: int,
                 digests: dict[Path, str] | None = None, sarif_root: Path | None = None,
                 report_id: str | None = None) -> bytes:
    return json_compact_bytes(sarif_dict(analysis, dataset, exit_code, digests, sarif_root, report_id))
