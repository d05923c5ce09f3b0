"""findings.sarif: SARIF 2.1.0, one result per flagged sample, for code-scanning
style consumers. Locations are relative to the DATASET_ROOT base (the dataset's
folder), so the file stays valid when the bundle moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__
from ..analysis.verdict import Analysis
from ..data import Dataset
from ..fileio import json_compact_bytes, real_path, sha256_file

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
RULE_ID = "BYE001"
_RULE = {
    "id": RULE_ID,
    "name": "BackdoorSuspectSample",
    "shortDescription": {"text": "Training sample in the low-attention-entropy cluster (suspected backdoor trigger)."},
    "fullDescription": {"text": (
        "BYE: the fine-tuned model's attention from the last prompt position onto the image collapses "
        "for this sample in the sensitive layers, the signature of a trigger-bearing sample. Remove it "
        "(cleaned.* already omits it) and inspect the image.")},
    "defaultConfiguration": {"level": "error"},
    "help": {"text": "See report.html for the layer evidence and the sample's attention heatmap."},
}


def _uri(path: Path, root: Path) -> str:
    return real_path(path).relative_to(real_path(root)).as_posix()


def sarif_dict(analysis: Analysis, dataset: Dataset, exit_code: int,
               digests: dict[Path, str] | None = None) -> dict[str, Any]:
    """`digests`: SHA-256 by resolved path, for files already hashed (the manifest's)."""
    digests = digests or {}

    def sha(path: Path) -> str:
        return digests.get(real_path(path)) or sha256_file(path)

    root = dataset.path.resolve().parent
    artifacts = [{"location": {"uri": dataset.path.name, "uriBaseId": "DATASET_ROOT"},
                  "hashes": {"sha-256": sha(dataset.path)}, "roles": ["analysisTarget"],
                  "mimeType": "application/json" if dataset.format != "parquet" else "application/octet-stream"}]
    image_index: dict[str, int] = {}
    uris: dict[str, str | None] = {}  # by image: its URI under the root, None when it has none
    results = []
    for f in analysis.flagged:
        sample = dataset.samples[f.index]
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": {"uri": dataset.path.name, "uriBaseId": "DATASET_ROOT",
                                                      "index": 0}},
            "logicalLocations": [{"name": sample.id, "fullyQualifiedName": f"records[{f.index}]",
                                  "kind": "element"}],
        }
        result: dict[str, Any] = {
            "ruleId": RULE_ID, "ruleIndex": 0, "level": "error", "kind": "fail",
            "message": {"text": f"Record {sample.id!r} (index {f.index}) is in the low-entropy cluster "
                                f"(score {f.score:.4f}): suspected backdoor sample."},
            "locations": [location],
            "partialFingerprints": {"recordId/v1": sample.id},
            "properties": {"index": f.index, "score": f.score},
        }
        if sample.image is not None and sample.image not in uris:  # a Path per flagged record is slow
            image = Path(sample.image)
            uris[sample.image] = (_uri(image, root) if image.is_file() and real_path(image).is_relative_to(root)
                                  else None)
        uri = None if sample.image is None else uris[sample.image]
        if uri is not None:
            if uri not in image_index:
                image_index[uri] = len(artifacts)
                artifacts.append({"location": {"uri": uri, "uriBaseId": "DATASET_ROOT"},
                                  "hashes": {"sha-256": sha(Path(sample.image))}})
            result["relatedLocations"] = [{"id": 0, "physicalLocation": {"artifactLocation": {
                "uri": uri, "uriBaseId": "DATASET_ROOT", "index": image_index[uri]}},
                "message": {"text": "the sample's image"}}]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "bye-audit", "version": __version__, "semanticVersion": __version__,
                                "rules": [_RULE]}},
            "invocations": [{"executionSuccessful": True, "exitCode": exit_code,
                             "exitCodeDescription": analysis.verdict}],
            "originalUriBaseIds": {"DATASET_ROOT": {"uri": root.as_uri() + "/"}},
            "artifacts": artifacts,
            "results": results,
            "properties": {"verdict": analysis.verdict, "reasons": list(analysis.reasons),
                           "sensitiveLayers": list(analysis.sensitive_layers),
                           "analysed": analysis.n_analysed, "records": analysis.n_records},
        }],
    }


def render_sarif(analysis: Analysis, dataset: Dataset, exit_code: int,
                 digests: dict[Path, str] | None = None) -> bytes:
    return json_compact_bytes(sarif_dict(analysis, dataset, exit_code, digests))
