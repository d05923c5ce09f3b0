"""The detector seam: a method is one module plus one registry line.

A test-only detector, registered here and nowhere else, runs through the
verdict, the report, SARIF and summary.json with its own words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from auditor.config import AuditConfig
from auditor.detectors import DETECTORS, Context, Criterion, MethodInfo, Reason, decide
from auditor.gate import gate, parse_fail_on
from auditor.report.html import render_html
from auditor.report.sarif import sarif_dict
from auditor.report.summary import summary_dict


@dataclass(frozen=True)
class ThresholdParams:
    toy_cut: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.toy_cut < 1:
            raise ValueError(f"toy_cut must be in (0, 1), got {self.toy_cut}")


class ThresholdDetector:
    """Flags samples whose layer-1 entropy is below a fixed cut."""

    name: ClassVar[str] = "toy"
    Params: ClassVar[type] = ThresholdParams
    info: ClassVar[MethodInfo] = MethodInfo(
        title="toy threshold", help="layer 1 below a cut (tests only)",
        description="Method toy: layer 1's entropy below {p.toy_cut} is flagged.",
        criteria_intro="Method toy flags when this holds:", score_text="Here: layer 1's entropy.",
        score_axis="layer-1 entropy", layer_word="evidence", layer_definition="Layer 1, always.",
        limitations=("Toy: it flags below {p.toy_cut}, whatever the data.",),
        sarif_rule={"id": "TOY001", "name": "ToyCut", "shortDescription": {"text": "toy cut"},
                    "fullDescription": {"text": "toy cut"}, "help": {"text": "toy"}})

    def __init__(self, params: ThresholdParams | None = None) -> None:
        self.params = params or ThresholdParams()

    def fit(self, x: np.ndarray, context: Context) -> ThresholdDetector:
        self.scores_ = x[:, 1].copy()
        self.flagged_ = self.scores_ < self.params.toy_cut
        share = float(self.flagged_.mean())
        self.criteria_ = (Criterion("few", share, "<= 20%", share <= 0.2, "few: share below the cut",
                                    f"{share:.0%}"),)
        self.reasons_ = (Reason("toy_flagged", f"{int(self.flagged_.sum())} below the cut"),)
        self.evidence_layers_, self.evidence_text_ = (1,), "layer 1 below the cut"
        self.converged_, self.clustering_, self.contrast_, self.details_ = True, None, (), {"toy": share}
        return self


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(DETECTORS, "toy", ThresholdDetector)  # the one registry line


def test_a_registered_detector_runs_through_every_output(toy, synthetic_audit):
    config = AuditConfig.of(method="toy", toy_cut=0.5)
    ds, features, a = synthetic_audit(n=60, n_low=8, config=config)
    assert a.verdict == "fail" and len(a.flagged) == 8 and a.reasons[0].code == "toy_flagged"
    assert a.to_dict()["toy"] == pytest.approx(8 / 60) and a.to_dict()["config"]["toy_cut"] == 0.5
    html = render_html(a, features.meta, ds, features=features).decode()
    assert "Method toy: layer 1&#39;s entropy below 0.5 is flagged." in html
    assert "Toy: it flags below 0.5, whatever the data." in html and "few: share below the cut" in html
    assert "BYE looks for attention" not in html and "minority method" not in html
    g = gate(a.verdict, len(a.flagged), a.n_analysed, parse_fail_on("verdict"))
    run = sarif_dict(a, ds, int(g.exit_code))["runs"][0]
    assert run["tool"]["driver"]["rules"][0]["id"] == "TOY001"
    assert {r["ruleId"] for r in run["results"]} == {"TOY001"}
    assert "layer 1 below the cut" in run["results"][0]["message"]["text"]
    summary = summary_dict(a, features.provenance, {}, g, "0000-0000-0000-0000", "2026-01-01T00:00:00Z")
    assert summary["method"] == "toy" and summary["evidence_layers"] == [1]
    assert summary["reasons"] == [{"code": "toy_flagged", "text": "8 below the cut"}]
    json.dumps(summary)


def test_the_verdict_follows_the_criteria(toy, synthetic_audit):
    _, _, a = synthetic_audit(n=60, n_low=20, config=AuditConfig.of(method="toy"))
    assert a.verdict == "pass" and a.flagged == ()  # 33% is not "few": the criterion fails, nothing flagged


def test_a_parameter_of_another_detector_is_refused(toy):
    with pytest.raises(ValueError, match="--toy-cut: a parameter of --method toy, not of --method combined"):
        AuditConfig.of(toy_cut=0.3)
    with pytest.raises(ValueError, match="--bsi-rule: a parameter of --method bye"):
        AuditConfig.of(method="toy", bsi_rule="reference")
    with pytest.raises(ValueError, match="toy_cut must be in"):  # the detector checks its own parameters
        AuditConfig.of(method="toy", toy_cut=2.0)


@pytest.mark.parametrize("holds, on_fail, flagged, verdict", [
    ((True, True), ("pass", "inconclusive"), True, "fail"),
    ((True, True), ("pass", "inconclusive"), False, "pass"),
    ((False, True), ("pass", "inconclusive"), True, "pass"),
    ((True, False), ("pass", "inconclusive"), True, "inconclusive"),
    ((False, False), ("pass", "inconclusive"), True, "pass"),  # no evidence outranks ambiguous evidence
])
def test_decide(holds, on_fail, flagged, verdict):
    criteria = [Criterion(f"c{k}", 0.0, "", h, "", "", o) for k, (h, o) in enumerate(zip(holds, on_fail))]
    assert decide(criteria, flagged) == verdict


def test_a_mixture_that_did_not_converge_is_recorded_and_shown(toy, monkeypatch, synthetic_audit):
    fit = ThresholdDetector.fit

    def unconverged(self, x, context):
        fit(self, x, context)
        self.converged_ = False
        return self

    monkeypatch.setattr(ThresholdDetector, "fit", unconverged)
    ds, features, a = synthetic_audit(n=60, n_low=8, config=AuditConfig.of(method="toy"))
    assert a.converged is False and a.to_dict()["converged"] is False
    assert [r.code for r in a.reasons] == ["toy_flagged", "mixture_not_converged"]
    html = render_html(a, features.meta, ds, features=features).decode()
    assert "did not converge" in html or "without converging" in html
