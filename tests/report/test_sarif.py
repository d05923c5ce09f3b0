import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from auditor.report.sarif import RULE_ID, sarif_dict

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


def test_sarif_is_valid_2_1_0_with_one_result_per_flagged_sample(synthetic_audit):
    ds, _, a = synthetic_audit(n=60, n_low=8)
    assert a.verdict == "fail" and len(a.flagged) == 8
    sarif = sarif_dict(a, ds, exit_code=1)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    run = sarif["runs"][0]
    assert run["invocations"][0]["exitCode"] == 1
    assert [r["logicalLocations"][0]["fullyQualifiedName"] for r in
            (res["locations"][0] for res in run["results"])] == [f"records[{f.index}]" for f in a.flagged]
    assert all(r["ruleId"] == RULE_ID for r in run["results"])
    dataset_artifact = run["artifacts"][0]
    assert dataset_artifact["location"]["uri"] == ds.path.name
    assert dataset_artifact["hashes"]["sha-256"] == hashlib.sha256(ds.path.read_bytes()).hexdigest()
    # the shared image is listed once, with its hash, and every result points at it
    assert len(run["artifacts"]) == 2
    assert {r["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["index"]
            for r in run["results"]} == {1}


def test_the_schema_check_can_fail(synthetic_audit):
    ds, _, a = synthetic_audit()
    sarif = sarif_dict(a, ds, exit_code=1)
    sarif["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(sarif)


def test_a_clean_verdict_has_no_results(synthetic_audit):
    ds, _, a = synthetic_audit(n_low=0)
    assert a.verdict == "pass"
    sarif = sarif_dict(a, ds, exit_code=0)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["invocations"][0]["exitCode"] == 0
