"""The detector seam: a method is one module plus one registry line.

A test-only detector, registered here and nowhere else, runs through the
verdict, the report, SARIF and summary.json with its own words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from auditor.config import AuditConfig
from auditor.detectors import DETECTORS, Context, Criterion, MethodInfo, Reason, decide
from auditor.detectors.params import check, param
from auditor.gate import gate, parse_fail_on
from auditor.report.html import render_html
from auditor.report.sarif import sarif_dict
from auditor.report.summary import summary_dict


@dataclass(frozen=True)
class ThresholdParams:
    toy_cut: float = param(0.5, "layer-1 entropy below which a sample is flagged", gt=0, lt=1)

    def __post_init__(self) -> None:
        check(self)


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
    with pytest.raises(ValueError, match=r"--toy-cut must be in \(0, 1\), got 2.0"):  # declared bounds
        AuditConfig.of(method="toy", toy_cut=2.0)


def test_a_registered_detector_has_its_parameters_on_the_command_line():
    """Registered before the CLI is built (as its module would be), the toy's
    parameter is an option of analyze, with its help and bounds."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'tests/detectors'); import test_registry as t\n"
            "from auditor.detectors import DETECTORS; DETECTORS['toy'] = t.ThresholdDetector\n"
            "from click.testing import CliRunner; from auditor.cli import cli\n"
            "print(CliRunner().invoke(cli, ['analyze', '--help'], terminal_width=200).output)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    assert "Parameters of --method toy:" in out and "[bye|minority|response|combined|toy]" in out
    assert "--toy-cut FLOAT" in out and "[default: 0.5; in (0, 1)]" in out


def test_a_parameter_name_another_part_holds_is_refused_at_registration(monkeypatch):
    from auditor.config import _owners

    @dataclass(frozen=True)
    class Clashing:
        tau: float = param(1.0, "a second tau")

    monkeypatch.setitem(DETECTORS, "clash", type("Clash", (ThresholdDetector,), {"Params": Clashing}))
    with pytest.raises(TypeError, match="clash: its parameter 'tau' is already bye's"):
        _owners()
    with pytest.raises(TypeError, match="clash: its parameter 'tau' is already bye's"):
        AuditConfig.of()


def test_a_channel_s_parameters_apply_to_the_method_that_runs_it():
    config = AuditConfig.of(answer_fence=4.0, group_max_groups=2)
    assert config.detection.channels["response"].answer_fence == 4.0
    assert config.detection.channels["minority"].group_max_groups == 2
    assert config.to_dict()["answer_fence"] == 4.0 and AuditConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="--answer-fence: a parameter of --method response, not of --method "
                                         "minority"):
        AuditConfig.of(method="minority", answer_fence=4.0)


def test_docs_cli_holds_the_parameter_table_the_declarations_give():
    from auditor.detectors.params import table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert table(DETECTORS) in docs, "paste the output of scripts/params_table.py into docs/cli.md"


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
