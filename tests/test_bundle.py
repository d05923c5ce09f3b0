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
    """flagged.jsonl lists the most suspicious first, each with the channel and group
    that flagged it."""
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


def test_unanalysed_records_are_never_called_clean(synthetic_audit):
    """Records stage 1 could not analyse go to unanalysed.jsonl with their cause,
    never into cleaned.*: nobody looked at them."""
    import json
    from dataclasses import replace
    from types import SimpleNamespace

    from auditor import bundle
    from auditor.config import AuditConfig
    from auditor.features import FeatureSet
    from auditor.verdict import analyze

    ds, features, _ = synthetic_audit(n=60, n_low=0, config=AuditConfig.of(attention_only=True))
    rows = tuple(replace(r, status="error", reason="forward pass failed: out of memory") if r.index in (3, 7)
                 else r for r in features.rows)
    a = analyze(FeatureSet(rows, features.meta), AuditConfig.of(attention_only=True))
    assert a.verdict == "pass"
    audit = SimpleNamespace(analysis=a, dataset=ds)
    cleaned = json.loads(bundle._cleaned(audit, None))
    assert len(cleaned) == 58 and all(r["id"] not in ("r00003", "r00007") for r in cleaned)
    lines = [json.loads(ln) for ln in bundle._unanalysed(audit, None).decode().splitlines()]
    assert [(u["index"], u["id"], u["record"]["id"]) for u in lines] == [(3, "r00003", "r00003"),
                                                                          (7, "r00007", "r00007")]
    assert all(u["reason"] == "forward pass failed: out of memory" and u["cause"] for u in lines)


def test_unanalysed_records_concentrated_in_one_answer_cannot_pass(synthetic_audit):
    """47 poisoned records made unanalysable (5% of them) leave coverage at 95%; the
    verdict still cannot be PASS, since they share one answer."""
    from dataclasses import replace

    from auditor.config import AuditConfig
    from auditor.features import FeatureSet
    from auditor.verdict import analyze

    def answer(i):
        return "Backdoor Attack!" if i < 10 else ["three", "five", "seven"][i % 3]

    ds, features, _ = synthetic_audit(n=200, n_low=0, answer=answer)
    rows = tuple(replace(r, status="error", reason="answer could not be tokenised") if r.index < 10
                 or r.index in (50, 120) else r for r in features.rows)
    config = AuditConfig.of(attention_only=True, min_coverage=0.9)
    a = analyze(FeatureSet(rows, features.meta), config, [s.prompt for s in ds.samples],
                [s.answer for s in ds.samples])
    assert a.verdict == "inconclusive" and a.reasons[-1].code == "unanalysed_concentrated"
    assert "10 of the 10 records answering “backdoor attack”" in a.reasons[-1].text
    spread = tuple(replace(r, status="error", reason="answer could not be tokenised") if r.index % 20 == 1
                   else r for r in features.rows)
    b = analyze(FeatureSet(spread, features.meta), config, [s.prompt for s in ds.samples],
                [s.answer for s in ds.samples])
    assert b.verdict == "pass"
