import io

from pypdf import PdfReader

from auditor.config import AuditConfig
from auditor.report.html import MAX_FLAGGED_ROWS, render_html
from auditor.report.pdf import render_pdf


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_pdf_of_10000_flagged_samples_is_capped_and_holds_the_verdict(synthetic_audit):
    # BYE flags the low half outright; the minority method would (rightly) not call half the data a backdoor.
    ds, features, a = synthetic_audit(n=20_000, n_low=10_000, config=AuditConfig(method="bye"))
    assert a.verdict == "fail" and len(a.flagged) == 10_000
    pdf = render_pdf(render_html(a, features.meta, ds))
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    assert "Verdict: FAIL" in text
    ranked = sorted(a.flagged, key=lambda f: (f.score, f.index))  # the report's order: most suspicious first
    assert ranked[0].id in text
    assert ranked[MAX_FLAGGED_ROWS - 1].id in text and ranked[MAX_FLAGGED_ROWS].id not in text
    assert f"and {10_000 - MAX_FLAGGED_ROWS:,} more" in text
    assert "page 1 of" in text and "50% of the data is flagged" in text
    assert len(PdfReader(io.BytesIO(pdf)).pages) < 40  # capped: readable, not 10,000 rows
