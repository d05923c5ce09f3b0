"""summary.json: the machine-readable verdict for release gates.

Schema: docs/summary.schema.json (versioned by `schema_version`; a field is
never renamed or removed within a version).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import __version__
from ..verdict import Analysis
from ..features.provenance import Provenance
from ..evidence.manifest import audit_environment
from ..gate import Gate

# 2: reasons carry a code ({"code", "text"}); criteria, converged and
# evidence_layers added; sensitive_layers is always BYE's BSI layers.
# 3: analysis_environment (the versions of stages 2-3 and the outputs) and
# undecided (the group behind an inconclusive verdict) added.
SUMMARY_SCHEMA_VERSION = 3


def summary_dict(analysis: Analysis, provenance: Provenance, output_sha256: dict[str, str],
                 gate: Gate, report_id: str, audited_at: str) -> dict[str, Any]:
    a, p = analysis, provenance
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "tool": {"name": "bye-audit", "version": __version__},
        "report_id": report_id,
        "audited_at": audited_at,
        "verdict": a.verdict,
        "method": a.method,
        "exit_code": int(gate.exit_code),
        "gate": {"fail_on": gate.rule, "tripped": gate.tripped, "reason": gate.reason},
        "reasons": a.reason_dicts(),
        "criteria": [c.to_dict() for c in a.criteria],
        "converged": a.converged,
        "counts": {"records": a.n_records, "analysed": a.n_analysed, "skipped": a.n_skipped,
                   "errors": a.n_errors, "flagged": len(a.flagged)},
        "unanalysed_by_cause": [{k: v for k, v in g.to_dict().items() if k != "examples"} for g in a.causes],
        "coverage": a.coverage,
        "sensitive_layers": list(a.sensitive_layers),
        "evidence_layers": list(a.evidence_layers),
        "evidence": a.evidence_text,
        "flagged": a.flag_rows(),
        "undecided": [{"index": f.index, "id": f.id, "score": f.score}
                      for f in sorted(a.undecided, key=lambda f: (f.score, f.index))],
        "config": a.config.to_dict(),
        "inputs": {
            "model": _as_dict(p.model),
            "adapter": _as_dict(p.adapter),
            "dataset": _as_dict(p.dataset),
            "base": _as_dict(p.base),
        },
        "environment": None if p.environment is None else p.environment.to_dict(),
        "analysis_environment": audit_environment(p)["analysis"],
        "outputs_sha256": dict(sorted(output_sha256.items())),
    }


def _as_dict(record: Any) -> dict[str, Any] | None:
    return None if record is None else asdict(record)
