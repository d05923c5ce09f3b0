"""The bundle's outputs are declared once, in the order they are made."""

import json

from auditor import bundle
from auditor.gate import gate, parse_fail_on


def test_outputs_are_made_in_the_declared_order_and_each_digest_covers_what_came_before(synthetic_audit):
    ds, features, a = synthetic_audit()
    g = gate(a.verdict, len(a.flagged), a.n_analysed, parse_fail_on("verdict"))
    audit = bundle.Audit(analysis=a, dataset=ds, features=features, gate=g, report_id="0000-0000-0000-0000",
                         audited_at="2026-01-01T00:00:00Z", input_digests={}, digests_by_path={}, roots={})
    files = bundle.render(audit)
    names = [bundle.file_name(n, ds) for n, _ in bundle.OUTPUTS]
    assert list(files) == [n for n in names if n != bundle.ATTESTATION]  # unsigned: no attestation
    assert bundle.output_names(ds) == names and names[-2:] == [bundle.MANIFEST, bundle.ATTESTATION]
    summary = json.loads(files[bundle.SUMMARY])
    assert set(summary["outputs_sha256"]) == set(names[: names.index(bundle.SUMMARY)])
    manifest = json.loads(files[bundle.MANIFEST])
    assert {f"outputs/{n}" for n in names[: names.index(bundle.MANIFEST)]} <= set(manifest["files"])


def test_flagged_jsonl_lists_the_most_suspicious_first_with_its_group(synthetic_audit):
    """Before: input order, with no word on which channel or group flagged a sample."""
    import json
    from types import SimpleNamespace

    from auditor import bundle

    ds, _, a = synthetic_audit(n=60, n_low=8)
    rows = [json.loads(ln) for ln in bundle._flagged(SimpleNamespace(analysis=a, dataset=ds), None).decode()
            .splitlines()]
    ranked = sorted(a.flagged, key=lambda f: (f.score, f.index))
    assert [r["index"] for r in rows] == [f.index for f in ranked] != sorted(f.index for f in ranked)
    assert a.method == "combined" and {r["group"] for r in rows} == {"attention"}  # the finding channel
    assert all(r["channels"] == ["attention"] for r in rows)
    assert [(label, [f.index for f in flags]) for label, flags in a.flag_groups()] == [
        ("attention", [f.index for f in ranked])]
