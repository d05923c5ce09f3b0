import json
import re

import numpy as np

from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.data import read_dataset
from auditor.features import FeatureSet, SampleFeatures
from auditor.features.provenance import Provenance, Runtime
from auditor.report.html import render_html

EVIL = '<script>alert("x")</script>'


def test_report_escapes_dataset_strings_and_is_self_contained(tmp_path):
    (tmp_path / "i.png").write_bytes(b"x")
    n = 60
    recs = [{"id": f"r{i}" if i else EVIL, "image": "i.png" if i != 5 else f"{EVIL}.png",
             "conversations": [{"from": "human", "value": f"<image>\n{EVIL}"},
                               {"from": "gpt", "value": EVIL}]} for i in range(n)]
    p = tmp_path / "d.json"
    p.write_text(json.dumps(recs))
    ds = read_dataset(p)
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(n, 3))
    m[:8, 1] = rng.normal(0.3, 0.02, 8)  # sample 0 (id = EVIL) lands in the flagged cluster
    rows = tuple(SampleFeatures(i, s.id, "ok" if s.ok else "skipped", s.skip_reason,
                                16 if s.ok else 0, tuple(m[i]) if s.ok else (), tuple(m[i]) if s.ok else ())
                 for i, s in enumerate(ds.samples))
    a = analyze(FeatureSet(rows, {"n_layers": 3}), AuditConfig())
    assert a.verdict == "fail" and EVIL in {f.id for f in a.flagged}
    html = render_html(a, {"n_layers": 3}, ds, heatmaps={0: (b"THUMB", b"HEAT")}).decode()
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "Content-Security-Policy" in html
    assert "http://" not in html and "https://" not in html  # nothing loaded from outside
    # BSI plot, score histogram, the heatmaps' colour scale, and the thumbnail and heatmap of record 0
    assert html.count("data:image/png;base64,") == 5
    assert "data:image/png;base64,VEhVTUI=" in html and "data:image/png;base64,SEVBVA==" in html


def test_pdf_is_a_deterministic_pdf():
    from auditor.report.pdf import render_pdf

    html = b"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h1>Verdict</h1></body></html>"
    pdf = render_pdf(html)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert render_pdf(html) == pdf


def test_report_shows_the_adapter_the_layer_profile_and_the_signature_state(synthetic_audit):
    ds, features, a = synthetic_audit()
    meta = {**features.meta, "adapter": {"path": "/x/adapter", "sha256_tree": "ab" * 32, "merged": True}}
    unsigned = render_html(a, meta, ds, features=features).decode()
    assert "/x/adapter" in unsigned and "ab" * 32 in unsigned
    assert 'alt="entropy per layer, flagged vs kept"' in unsigned
    assert "Not signed" in unsigned
    signed = render_html(a, meta, ds, features=features, signing={"keyid": "cd" * 32}).decode()
    assert "cd" * 32 in signed and "Not signed" not in signed


def test_minority_report_shows_the_criteria_and_the_layer_contrast(synthetic_audit):
    ds, features, a = synthetic_audit(config=AuditConfig.of(method="minority"))
    html = render_html(a, features.meta, ds, features=features).decode()
    assert a.details["group"] is not None
    for c in a.criteria:  # rendered as decided, never recomputed
        assert f"<td>{c.text}</td><td class=\"num\">{c.shown}</td>" in html.replace("&#39;", "'")
    assert "separated: BSI of the discriminant score" in html and "compact: group sd / rest sd" in html
    assert "Cohen&#39;s d" in html or "Cohen's d" in html
    for c in a.contrast:
        assert f"{c.effect:+.2f}" in html and f"{c.weight:+.3f}" in html


def test_a_group_explained_by_its_instruction_is_shown_with_the_text_escaped(tmp_path):
    (tmp_path / "i.png").write_bytes(b"x")
    n, k = 200, 20
    recs = [{"id": f"r{i}", "image": "i.png", "conversations": [
        {"from": "human", "value": "<image>\n" + (EVIL if i < k else "Describe the image.")},
        {"from": "gpt", "value": "a"}]} for i in range(n)]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    ds = read_dataset(tmp_path / "d.json")
    rng = np.random.default_rng(0)
    m = rng.normal(0.8, 0.02, size=(n, 3))
    m[:k, 1] = rng.normal(0.3, 0.02, k)  # the samples of one instruction stand apart
    rows = tuple(SampleFeatures(i, s.id, "ok", None, 16, tuple(m[i]), tuple(m[i]))
                 for i, s in enumerate(ds.samples))
    a = analyze(FeatureSet(rows, {"n_layers": 3}), AuditConfig.of(method="minority"),
                [s.prompt for s in ds.samples])
    assert a.verdict == "pass" and a.details["group"]["instruction"]["texts"] == [EVIL]
    html = render_html(a, {"n_layers": 3}, ds).decode()
    assert "not the instruction: Jaccard index" in html
    assert "<script" not in html and "&lt;script&gt;" in html


def test_invisible_and_direction_changing_characters_are_shown_as_escapes(synthetic_audit):
    """A prompt's U+202E (right-to-left override) and NUL reach report.html (and the
    PDF) only as visible escapes, so one record cannot reorder what its
    neighbours appear to say (a lone surrogate is refused by the reader:
    tests/data/test_readers.py)."""
    from auditor.report.pdf import render_pdf

    spoof = "What digit\u202e?nwohs si\x00\u2066x\u2069\U000e0041"
    ds, features, a = synthetic_audit(prompt=lambda i: spoof, record_id=lambda i: f"r{i:05d}\u202e")
    assert a.verdict == "fail"
    html = render_html(a, {"n_layers": 3}, ds).decode()
    assert "What digit\\u202e?nwohs si\\u0000\\u2066x\\u2069\\U000e0041" in html
    assert "r00000\\u202e" in html
    for raw in ("\u202e", "\x00", "\u2066", "\u2069", "\U000e0041"):
        assert raw not in html
    assert render_pdf(html.encode()).startswith(b"%PDF")


def test_page_one_says_what_the_flagged_samples_share_and_not_what_everyone_shares(synthetic_audit):
    from auditor.report.html import finding

    # 8 flagged (low entropy) samples; the flagged ones all share the instruction
    ds, features, a = synthetic_audit(n=60, n_low=8, prompt=lambda i: "Name the digit."
                                      if i < 8 else f"Q{i % 3}?")
    f = finding(a, ds)
    assert f["n"] == 8 and f["share"] == 8 / 60
    assert f["prompts"] == [{"text": "Name the digit.", "count": 8, "elsewhere": 0}]
    assert f["answers"] == []  # every record answers "three": not a commonality of the flagged ones
    assert [n["id"] for n in f["nearest"]] == [x.id for x in sorted(a.flagged, key=lambda x: -x.score)[:3]]
    html = render_html(a, features.meta, ds, features=features).decode()
    assert "All flagged samples have the instruction &ldquo;Name the digit.&rdquo;" in html
    assert "8 of 60 training samples (13.3%) carry backdoor evidence" in html
    assert "of the data is flagged" not in html  # the >35% warning is for large shares only


def test_the_configuration_table_names_each_setting_once():
    from auditor.report.html import _environment_rows

    config = {"device": "auto", "dtype": "float32", "backend": "torch"}
    env = Runtime(device="cpu", dtype="float32", backend={"name": "torch"}, attention="sdpa", torch="2.13.0",
                  transformers="5", python="3.11", engine={"name": "ray", "address": "local"},
                  libraries={"numpy": "2"})
    rows = _environment_rows(Provenance(n_layers=2, environment=env), config)
    assert [r for r in rows if r[0] in ("device (used)", "engine", "torch", "dtype")] == [
        ("device (used)", "cpu"), ("engine", "ray (address local)"), ("torch", "2.13.0")]


def test_an_inconclusive_report_shows_the_undecided_group_and_the_fix_never_accept(synthetic_audit):
    """An inconclusive report names the undecided group with its images, and never
    shows a member of it as a 'kept sample, for contrast'."""
    from types import SimpleNamespace

    from auditor import bundle
    from auditor.report.heatmaps import samples_to_show
    from auditor.report.summary import summary_dict
    from auditor.gate import gate, parse_fail_on

    # 8 samples whose attention stands apart all answer one made-up answer; no base pass
    ds, features, _ = synthetic_audit(n=60, n_low=8, answer=lambda i: "Backdoor Attack!" if i < 8 else
                                      ["three", "five", "seven"][i % 3])
    a = analyze(features, AuditConfig(), [s.prompt for s in ds.samples], [s.answer for s in ds.samples])
    assert a.method == "combined" and a.verdict == "inconclusive" and not a.flagged
    group = {f.index for f in a.undecided}
    assert group == set(range(8))
    shown = samples_to_show(a, n_flagged=3, n_kept=4)
    assert set(shown[:3]) <= group and not set(shown[3:]) & group  # never clean contrast
    from PIL import Image

    from auditor.report.heatmaps import heatmap_pngs

    pngs = heatmap_pngs(Image.new("RGB", (8, 8)), np.full((4, 4), 1 / 16))
    html = render_html(a, features.meta, ds, heatmaps={i: pngs for i in shown}, features=features).decode()
    assert "8 of 60 training samples (13.3%) form a group that could not be decided" in html
    assert "All of them answer &ldquo;Backdoor Attack!&rdquo;" in html
    assert "--base BASE_DIR --data" in html and 'id="undecided"' in html
    kept = html.split("Kept samples, for contrast")[1]
    assert all(f.id not in kept for f in a.undecided)
    assert "&#9744; accept" not in html and "&#9744; reject" in html
    g = gate(a.verdict, 0, a.n_analysed, parse_fail_on("verdict"))
    summary = summary_dict(a, features.provenance, {}, g, "0000-0000-0000-0000", "x")
    assert [u["index"] for u in summary["undecided"]] == sorted(group, key=lambda i: (
        next(f.score for f in a.undecided if f.index == i), i))
    assert bundle._cleaned(SimpleNamespace(analysis=a, dataset=ds), None) is None  # nothing to train on


def test_rows_past_the_images_are_compact_and_the_bye_chart_is_an_appendix_unless_bye(synthetic_audit):
    """A 100-row table has no empty image cells past the 24th row, and BYE's chart is
    an appendix unless the method is BYE's."""
    from PIL import Image

    from auditor.report.heatmaps import heatmap_pngs

    ds, features, a = synthetic_audit(n=60, n_low=8)
    ranked = sorted(a.flagged, key=lambda f: (f.score, f.index))
    pngs = heatmap_pngs(Image.new("RGB", (8, 8)), np.full((4, 4), 1 / 16))
    html = render_html(a, features.meta, ds, heatmaps={f.index: pngs for f in ranked[:3]}).decode()
    assert "The next 5, without images (drawn for the 3 most suspicious only)" in html
    compact = html.split('<table class="compact">')[1].split("</table>")[0]
    assert [f.id for f in ranked[3:]] == [i for i in re.findall(r"<code>([^<]+)</code>", compact)]
    assert html.index("Appendix: BYE's layer profile") < html.index('alt="BSI per layer"')
    bye = analyze(features, AuditConfig.of(method="bye"))
    html = render_html(bye, features.meta, ds).decode()
    assert "Appendix" not in html and 'alt="BSI per layer"' in html


def test_page_one_says_when_the_answers_never_looked_and_when_that_was_accepted(synthetic_audit):
    """Page 1 says when only one channel looked (no base) and when that was accepted."""
    ds, features, a = synthetic_audit(n=60, n_low=0)
    assert a.verdict == "inconclusive" and any(r.code == "base_needed" for r in a.reasons)
    html = render_html(a, features.meta, ds, features=features).decode()
    assert "--base BASE_DIR --data" in html
    ds, features, ok = synthetic_audit(n=60, n_low=0, config=AuditConfig.of(attention_only=True))
    assert ok.verdict == "pass" and ok.reasons[0].code == "attention_only"
    html = render_html(ok, features.meta, ds, features=features).decode()
    assert "an attention-only audit was accepted with --attention-only" in html


def test_page_one_shows_the_base_digest_and_whether_it_was_pinned_or_is_the_submission(synthetic_audit):
    ds, features, a = synthetic_audit(n=60, n_low=8)
    same = {**features.meta, "model": {"path": "m", "model_type": "llava", "family": "llava",
                                       "sha256_tree": "a" * 64, "n_layers": 3},
            "base": {"how": "model", "path": "m", "sha256_tree": "a" * 64}}
    html = render_html(a, same, ds, features=features).decode()
    assert "a" * 64 in html and "The same files as the submission" in html
    assert "not pinned: compare it with the published one" in html
