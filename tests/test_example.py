"""End to end on the bundled example, through the installed console script (slow)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits-badnets"
EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}
BIN = Path(sys.executable).parent / "bye-audit"


def _run(*args, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=900,
                          env=None if env is None else {**os.environ, **env})


def test_console_script_reports_its_version():
    res = _run("--version")
    assert res.returncode == 0 and res.stdout.startswith("bye-audit, version ")


def test_example_layout_is_complete():
    for p in ["model/config.json", "model/model.safetensors", "model/processor_config.json",
              "base/config.json", "base/model.safetensors", "dataset.json", "poisoned_ids.txt",
              "build_metrics.json"]:
        assert (EXAMPLE / p).is_file(), p
    records = json.loads((EXAMPLE / "dataset.json").read_text())
    poisoned = (EXAMPLE / "poisoned_ids.txt").read_text().split()
    assert len(records) == 1000 and len(poisoned) == 100
    assert all((EXAMPLE / r["image"]).is_file() for r in records)
    size = sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file())
    assert size < 20_000_000  # the fine-tune and its base, 5.4 MB each; 1,000 PNGs


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    assert _run("keygen", "--out", str(folder)).returncode == 0
    return folder


@pytest.fixture(scope="module")
def audit_twice(tmp_path_factory, keys):
    outs = []
    for k in range(2):
        out = tmp_path_factory.mktemp(f"example{k}") / "out"
        # The same audit time for both: then every byte must match (the date is the only thing let differ).
        res = _run("audit", "--model", str(EXAMPLE / "model"), "--base", str(EXAMPLE / "base"),
                   "--data", str(EXAMPLE / "dataset.json"),
                   "--out", str(out), "--no-progress", "--sign-key", str(keys / "bye-audit.key"),
                   env={"SOURCE_DATE_EPOCH": "1790000000"})
        outs.append((res, out))
    return outs


@pytest.mark.slow
def test_audit_of_the_example_is_consistent_and_reproducible(audit_twice):
    (res, out), (res2, out2) = audit_twice
    assert res.stderr.strip() == "" or "Traceback" not in res.stderr
    analysis = json.loads((out / "analysis.json").read_text())
    assert res.returncode == EXIT[analysis["verdict"]], res.stdout + res.stderr
    assert (out / "analysis.json").read_bytes() == (out2 / "analysis.json").read_bytes()
    for name in ["features.parquet", "report.html", "report.pdf", "cleaned.json", "flagged.jsonl",
                 "findings.sarif", "summary.json", "attestation.dsse.json"]:
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name
    # BSI plot, histogram, entropy per layer, the heatmaps' colour scale, then
    # thumbnail + heatmap per shown sample (flagged, then 4 kept)
    n_flagged = len(analysis["flagged"])
    shown = min(24, n_flagged) + (4 if analysis["scores"] else 0)
    # (no score histogram when the answer channel's scores are shown: they are not a fitted mixture)
    plots = 3 + (analysis["score_mixture"] is not None)
    pngs = (out / "report.html").read_text().count("data:image/png")
    assert pngs == (plots + 2 * shown if n_flagged else 1)
    assert json.loads((out / "summary.json").read_text())["audited_at"] == "2026-09-21T14:13:20Z"
    records = json.loads((EXAMPLE / "dataset.json").read_text())
    cleaned = json.loads((out / "cleaned.json").read_text())
    flagged = {json.loads(ln)["index"]: json.loads(ln)["record"]
               for ln in (out / "flagged.jsonl").read_text().splitlines()}
    kept = iter(cleaned)
    assert [flagged[i] if i in flagged else next(kept) for i in range(len(records))] == records


@pytest.mark.slow
def test_readme_states_the_measured_detection(audit_twice):
    """The README's numbers for the example are the ones the audit produces."""
    _, out = audit_twice[0]
    res = _run("evaluate", str(out), "--truth", str(EXAMPLE / "poisoned_ids.txt"), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["verdict"] == "fail" and m["f1"] >= 0.95  # the default method finds the backdoor
    readme = (ROOT / "README.md").read_text()
    row = re.search(r"\| `combined` \(default\) \| (\d+) \| ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+) \| "
                    r"([\d.]+) \|",
                    readme)
    assert row, "README lacks the example's detection row for the default method"
    stated = [float(v) for v in row.groups()]
    assert stated == [m["tp"] + m["fp"]] + [round(m[k], 3)
                                            for k in ("precision", "recall", "f1", "fpr", "auroc")]


@pytest.mark.slow
def test_the_example_bundle_is_signed_verifiable_and_its_pdf_readable(audit_twice, keys):
    import io

    from pypdf import PdfReader

    _, out = audit_twice[0]
    res = _run("verify", str(out), "--key", str(keys / "bye-audit.pub"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "verified" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (f"signed result: {summary['verdict'].upper()}, {summary['counts']['flagged']:,} of "
            f"{summary['counts']['records']:,} records flagged" in res.stdout)
    assert summary["report_id"] in res.stdout and summary["audited_at"] in res.stdout
    analysis = json.loads((out / "analysis.json").read_text())
    pdf = PdfReader(io.BytesIO((out / "report.pdf").read_bytes()))
    text = "\n".join(p.extract_text() for p in pdf.pages)
    assert f"Verdict: {analysis['verdict'].upper()}" in text
    if analysis["flagged"]:
        assert analysis["flagged"][0]["id"] in text


@pytest.mark.slow
def test_page_one_of_the_example_counts_each_channel_names_the_base_and_holds_the_sign_off(audit_twice):
    """Page 1 of the example credits each channel with what it flagged, names the
    base, and keeps the sign-off on page 1."""
    import io

    from pypdf import PdfReader

    _, out = audit_twice[0]
    channels = json.loads((out / "analysis.json").read_text())["channels"]
    summary = json.loads((out / "summary.json").read_text())
    page1 = " ".join(PdfReader(io.BytesIO((out / "report.pdf").read_bytes())).pages[0].extract_text().split())
    assert f"the attention channel flagged {channels['attention']['flagged']}" in page1
    assert f"the answer channel flagged {channels['answers']['flagged']}" in page1
    assert f"{channels['both']} by both" in page1
    assert "Base model" in page1 and summary["inputs"]["base"]["sha256_tree"][:16] in page1.replace(" ", "")
    assert "Not checked by this audit" in page1 and "Sign-off" in page1 and "Measured:" not in page1
