import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from auditor.config import AuditConfig
from auditor.report.sarif import MAX_RESULTS, rule, sarif_dict

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


def test_sarif_is_valid_2_1_0_with_one_result_per_flagged_group(synthetic_audit):
    """One SARIF result per flagged group: one backdoor is one alert, not 100."""
    ds, _, a = synthetic_audit(n=60, n_low=8)
    assert a.verdict == "fail" and len(a.flagged) == 8
    sarif = sarif_dict(a, ds, exit_code=1)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    run = sarif["runs"][0]
    assert run["invocations"][0]["exitCode"] == 1
    assert len(run["results"]) == 1
    result = run["results"][0]
    ranked = sorted(a.flagged, key=lambda f: (f.score, f.index))  # most suspicious first
    first = result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
    assert first == f"records[{ranked[0].index}]"
    records = [r["logicalLocations"][0]["fullyQualifiedName"] for r in result["relatedLocations"]
               if "logicalLocations" in r]
    assert records == [f"records[{f.index}]" for f in ranked]
    assert result["properties"]["records"] == 8
    assert result["message"]["text"].startswith("8 record(s) flagged")
    assert result["ruleId"] == rule(a.method)["id"]
    dataset_artifact = run["artifacts"][0]
    assert dataset_artifact["location"]["uri"] == ds.path.name
    assert dataset_artifact["hashes"]["sha-256"] == hashlib.sha256(ds.path.read_bytes()).hexdigest()
    # the shared image is listed once, with its hash, and each sample's image points at it
    assert len(run["artifacts"]) == 2
    assert {r["physicalLocation"]["artifactLocation"]["index"] for r in result["relatedLocations"]
            if "logicalLocations" not in r} == {1}
    assert "originalUriBaseIds" not in run  # no absolute path of this machine without --sarif-root
    assert "file://" not in json.dumps(sarif)


def test_the_schema_check_can_fail(synthetic_audit):
    ds, _, a = synthetic_audit()
    sarif = sarif_dict(a, ds, exit_code=1)
    sarif["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(sarif)


def test_a_clean_verdict_has_no_results(synthetic_audit):
    ds, _, a = synthetic_audit(n_low=0, config=AuditConfig.of(attention_only=True))
    assert a.verdict == "pass"
    sarif = sarif_dict(a, ds, exit_code=0)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["invocations"][0]["exitCode"] == 0


def _github_requirements(sarif: dict) -> list[str]:
    """What GitHub code scanning needs of an uploaded SARIF file (docs.github.com,
    "SARIF support for code scanning"), as a list of the requirements broken."""
    broken = []
    if sarif.get("version") != "2.1.0" or "$schema" not in sarif:
        broken.append("version 2.1.0 and $schema")
    if not 1 <= len(sarif.get("runs", [])) <= 20:
        broken.append("1 to 20 runs")
    for run in sarif.get("runs", []):
        driver = run["tool"]["driver"]
        if not driver.get("name") or not driver.get("semanticVersion"):
            broken.append("tool.driver.name and semanticVersion")
        rules = {r["id"]: r for r in driver.get("rules", [])}
        for r in rules.values():
            props = r.get("properties", {})
            if not (r.get("shortDescription", {}).get("text") and r.get("fullDescription", {}).get("text")
                    and r.get("help", {}).get("text")):
                broken.append(f"rule {r['id']}: short/full description and help text")
            sev = props.get("security-severity")
            if not (isinstance(sev, str)
                    and 0.0 <= float(sev) <= 10.0) or "security" not in props.get("tags", []):
                broken.append(f"rule {r['id']}: security-severity as a string 0.0-10.0 and the security tag")
            if len(props.get("tags", [])) > 20:
                broken.append(f"rule {r['id']}: at most 20 tags")
        if "/" not in run.get("automationDetails", {}).get("id", ""):
            broken.append("automationDetails.id as category/run")
        if len(run.get("results", [])) > 25_000:
            broken.append("at most 25,000 results per run")
        for res in run.get("results", []):
            if res.get("ruleId") not in rules or not res.get("message", {}).get("text"):
                broken.append("result: a ruleId of a declared rule and a message")
            loc = res.get("locations", [{}])[0].get("physicalLocation", {})
            uri = loc.get("artifactLocation", {}).get("uri", "")
            if not uri or uri.startswith("/") or "://" in uri:
                broken.append("result: a relative artifactLocation.uri")
            if not isinstance(loc.get("region", {}).get("startLine"), int) or loc["region"]["startLine"] < 1:
                broken.append("result: region.startLine >= 1")
            if len(res.get("locations", [])) > 1000:
                broken.append("result: at most 1,000 locations")
    return sorted(set(broken))


@pytest.mark.parametrize("method", ["bye", "minority"])
def test_sarif_meets_the_github_code_scanning_requirements(synthetic_audit, method):
    ds, _, a = synthetic_audit(n=60, n_low=8, config=AuditConfig.of(method=method))
    assert a.verdict == "fail"
    sarif = sarif_dict(a, ds, exit_code=1, report_id="0123-4567-89ab-cdef")
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert _github_requirements(sarif) == []
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [rule(method)["id"]]
    assert run["automationDetails"]["id"] == f"bye-audit/{ds.path.name}/0123-4567-89ab-cdef"
    text = run["results"][0]["message"]["text"]
    assert ("more collapsed" in text) if method == "bye" else (
        "more collapsed (lower entropy) than the rest in layer 1" in text)
    broken = json.loads(json.dumps(sarif))
    del broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert _github_requirements(broken) == ["result: region.startLine >= 1"]  # the check can fail


def _records(n):
    return [{"id": f"r{i:05d}", "image": "i.png",
             "conversations": [{"from": "human", "value": f"<image>\nWhat digit? ({i})"},
                               {"from": "gpt", "value": "three"}]} for i in range(n)]


@pytest.mark.parametrize("layout", ["json-indented", "jsonl-with-blank-lines"])
def test_each_result_points_at_the_line_where_its_record_starts(synthetic_audit, tmp_path, layout):
    from auditor.data import read_dataset

    ds0, features, a = synthetic_audit(n=60, n_low=8)
    recs = _records(60)
    if layout == "json-indented":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(recs, indent=2))
    else:
        path = tmp_path / "d.jsonl"
        path.write_text("\n\n".join(json.dumps(r) for r in recs) + "\n")
    ds = read_dataset(path)
    lines = path.read_text().split("\n")
    sarif = sarif_dict(a, ds, exit_code=1)
    assert sarif["runs"][0]["results"]
    for res in sarif["runs"][0]["results"]:
        loc = res["locations"][0]
        start = loc["physicalLocation"]["region"]["startLine"]
        index = int(loc["logicalLocations"][0]["fullyQualifiedName"][8:-1])
        line = lines[start - 1].strip()
        assert line.startswith("{"), line
        # the record's id is on that line (JSONL) or the next few (indented JSON)
        assert f'"r{index:05d}"' in "\n".join(lines[start - 1:start + 2])


def test_sarif_root_makes_uris_relative_to_the_repository(synthetic_audit, tmp_path):
    ds, _, a = synthetic_audit()
    sarif = sarif_dict(a, ds, exit_code=1, sarif_root=tmp_path.parent)
    run = sarif["runs"][0]
    uri = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": f"{tmp_path.name}/{ds.path.name}", "uriBaseId": "%SRCROOT%", "index": 0}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.parent.resolve().as_uri() + "/"
    from auditor.errors import AuditInputError

    with pytest.raises(AuditInputError, match="not under it"):
        sarif_dict(a, ds, exit_code=1, sarif_root=tmp_path / "elsewhere")


def test_an_inconclusive_run_is_visible_not_a_clean_scan(synthetic_audit):
    ds, _, a = synthetic_audit(n=30, n_low=4)  # fewer than min_samples (50)
    assert a.verdict == "inconclusive"
    sarif = sarif_dict(a, ds, exit_code=3)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    inv = sarif["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    assert inv["toolExecutionNotifications"][0]["level"] == "error"
    assert "inconclusive" in inv["toolExecutionNotifications"][0]["message"]["text"]


def test_related_locations_are_capped_at_the_code_scanning_limit(synthetic_audit, monkeypatch):
    import auditor.report.sarif as sarif_module

    assert MAX_RESULTS == 25_000 and sarif_module.MAX_RELATED == 1_000  # GitHub's limits
    ds, _, a = synthetic_audit(n=60, n_low=8)
    monkeypatch.setattr(sarif_module, "MAX_RELATED", 7)  # each record: its line and its image
    result = sarif_module.sarif_dict(a, ds, exit_code=1)["runs"][0]["results"][0]
    assert len(result["relatedLocations"]) == 6
    assert sum("logicalLocations" in r for r in result["relatedLocations"]) == 3
    assert "the first 3 are related locations" in result["message"]["text"]
    assert len(result["properties"]["ids"]) == 8  # every id still named

